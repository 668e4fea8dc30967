import type { Contract } from './contract.js';
import type { Handlers } from './handler.js';
import { ServiceUnavailable } from './problem.js';

/**
 * The operational endpoints: liveness, readiness (a database round trip), the contract itself
 * and its rendered reference.
 */
export function operationsEndpoints(deps: { contract: Contract; ping: () => Promise<void> }): Handlers<
  'getLiveness' | 'getReadiness' | 'getOpenApiDocument' | 'getOpenApiYaml' | 'getDocs'
> {
  const { contract, ping } = deps;
  return {
    getLiveness: async () => ({ status: 200, body: { status: 'ok' } }),
    getReadiness: async () => {
      try {
        await ping();
      } catch (error) {
        throw new ServiceUnavailable('The database does not answer.', error);
      }
      return { status: 200, body: { status: 'ok', checks: { database: 'ok' } } };
    },
    getOpenApiDocument: async () => ({ status: 200, body: contract.spec }),
    getOpenApiYaml: async () => ({
      status: 200,
      body: contract.specYaml,
      headers: { 'Content-Type': 'application/yaml; charset=utf-8' },
    }),
    getDocs: async () => ({
      status: 200,
      body: contract.docsHtml,
      headers: { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-cache' },
    }),
  };
}
