// `node --import ./tests/helpers/loaded-modules.mjs …`: every module the process loads through the
// module loader (each ES module, and each CommonJS package an ES module imports) is appended to
// the file LOADED_MODULES_FILE names, one URL per line, as it loads. What a process did not load
// by a given moment is what that file does not list.
import { register } from 'node:module';

register('./loaded-modules-hooks.mjs', import.meta.url, { data: process.env.LOADED_MODULES_FILE });
