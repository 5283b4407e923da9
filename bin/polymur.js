#!/usr/bin/env node
// The TypeScript sources run directly on Node >= 24 (type stripping); no build step.
import "../cli/polymur.ts";
