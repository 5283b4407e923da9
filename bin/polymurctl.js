#!/usr/bin/env node
// First, the Node version (require-node.js), before anything else is loaded.
import { requireNode } from "./require-node.js";

requireNode("polymurctl", import.meta.url);
await import("../dist/cli/polymurctl/main.js");
