#!/usr/bin/env node
// First, the Node (require-node.js), before anything else is loaded: under an
// older Node, the program runs again under the Node installed with polymur.
import { requireNode } from "./require-node.js";

if (requireNode("polymurctl", import.meta.url)) {
  await import("../dist/cli/polymurctl/main.js");
}
