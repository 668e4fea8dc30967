import { describe, expect, it } from '@jest/globals';
import { hs256Token } from '../../scripts/server-process.js';
import { createTokenVerifier } from '../../src/auth/token-verifier.js';

const secret = 'a-test-secret-that-is-long-enough-for-hs256!';
const sign = (sub: string, exp: number) => hs256Token(secret, sub, exp);

describe('verified-token cache', () => {
  it('answers each token with its own subject', async () => {
    const verifier = createTokenVerifier({ secret, clockToleranceSeconds: 0 });
    const exp = Math.floor(Date.now() / 1000) + 60;
    const [alice, bob] = [await sign('alice', exp), await sign('bob', exp)];
    for (let i = 0; i < 3; i += 1) {
      expect((await verifier.verify(alice)).sub).toBe('alice');
      expect((await verifier.verify(bob)).sub).toBe('bob');
    }
  });

  it('stops using a remembered token at its exp', async () => {
    const verifier = createTokenVerifier({ secret, clockToleranceSeconds: 0 });
    // exp is whole seconds: 3 s ahead leaves the first check at least 2 s even on a loaded machine
    // (1 s ahead failed it under CI's load), then wait until just past it.
    const exp = Math.floor(Date.now() / 1000) + 3;
    const token = await sign('alice', exp);
    expect((await verifier.verify(token)).sub).toBe('alice');
    await new Promise((resolve) => setTimeout(resolve, exp * 1000 - Date.now() + 1100));
    await expect(verifier.verify(token)).rejects.toMatchObject({ status: 401, reason: 'ERR_JWT_EXPIRED' });
  });

  it('never remembers a token that failed, nor one made from a remembered token', async () => {
    const verifier = createTokenVerifier({ secret, clockToleranceSeconds: 0 });
    const token = await sign('alice', Math.floor(Date.now() / 1000) + 60);
    await verifier.verify(token);
    const [header, payload] = token.split('.');
    const forged = `${header}.${Buffer.from(JSON.stringify({ sub: 'mallory', exp: 9999999999 })).toString('base64url')}.${token.split('.')[2]}`;
    expect(payload).not.toBe(forged.split('.')[1]);
    for (let i = 0; i < 2; i += 1) await expect(verifier.verify(forged)).rejects.toMatchObject({ status: 401 });
  });
});
