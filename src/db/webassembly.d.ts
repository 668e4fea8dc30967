/**
 * Node's WebAssembly global, which TypeScript declares only in its DOM and worker libraries: here
 * just its compiled module, the type of PGlite's option that takes one (`pgliteWasmModule`).
 */
declare namespace WebAssembly {
  /** A compiled module (`WebAssembly.compile`): code that any number of instances share. */
  interface Module {
    readonly [Symbol.toStringTag]: 'WebAssembly.Module';
  }
}
