import { readFile } from 'node:fs/promises';
import { TestEnvironment } from 'jest-environment-node';

/**
 * jest's node environment, plus PGlite's WebAssembly compiled once per jest worker and handed to
 * every test file it runs (globalThis.__pgliteWasm; helpers/server.ts gives it to each PGlite).
 *
 * PGlite keeps the module it compiles in its own module scope, and jest loads every test file's
 * modules afresh: without this each file compiled PostgreSQL's 9 MB of WebAssembly again, and V8
 * optimised its hot functions again, about 0.4 s of CPU per file. A compiled module is shared
 * code, not state: every database still gets its own instance and memory.
 */
let compiled;
export default class TestEnvironmentSharingPglite extends TestEnvironment {
  async setup() {
    await super.setup();
    compiled ??= readFile(new URL('pglite.wasm', import.meta.resolve('@electric-sql/pglite'))).then((bytes) =>
      WebAssembly.compile(bytes),
    );
    const module = await compiled;
    // Emscripten tells a module from bytes with instanceof, which a module made in another realm fails.
    Object.setPrototypeOf(module, this.global.WebAssembly.Module.prototype);
    this.global.__pgliteWasm = module;
  }
}
