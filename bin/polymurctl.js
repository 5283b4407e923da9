#!/usr/bin/env node
import "../dist/cli/polymurctl/main.js";
