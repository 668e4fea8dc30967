import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { memoiseValidatorRouteCompilation } from '../../src/http/openapi.js';

const require = createRequire(import.meta.url);
const validatorsCopy = () =>
  require(require.resolve('path-to-regexp', { paths: [dirname(require.resolve('express-openapi-validator'))] })) as {
    pathToRegexp: (path: string, options?: object) => { regexp: RegExp; keys: { name: string }[] };
  };

describe('the validator’s route matching', () => {
  it('compiles each route template once: the validator’s path-to-regexp is the memoised one, with the same results', () => {
    const memoised = memoiseValidatorRouteCompilation();
    expect(validatorsCopy().pathToRegexp).toBe(memoised);
    expect(memoiseValidatorRouteCompilation()).toBe(memoised); // installed once, never wrapped twice
    const first = validatorsCopy().pathToRegexp('/api/v1/tasks/:taskId', { sensitive: false, strict: false });
    expect(validatorsCopy().pathToRegexp('/api/v1/tasks/:taskId', { sensitive: false, strict: false })).toBe(first);
    expect(first.keys.map((k) => k.name)).toEqual(['taskId']);
    expect(first.regexp.exec('/API/v1/tasks/abc')?.[1]).toBe('abc');
    // Other options are another compilation, not the cached one.
    const sensitive = validatorsCopy().pathToRegexp('/api/v1/tasks/:taskId', { sensitive: true, strict: false });
    expect(sensitive).not.toBe(first);
    expect(sensitive.regexp.exec('/API/v1/tasks/abc')).toBeNull();
  });
});
