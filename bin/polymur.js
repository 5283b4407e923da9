#!/usr/bin/env node
// Runs the JavaScript that `npm run build` (run by `npm ci` through `prepare`)
// compiles from the TypeScript sources: compiled code starts faster and uses
// about 35 MB less memory per process than Node's on-the-fly type stripping.
import "../dist/cli/polymur/main.js";
