#!/usr/bin/env node
import "../dist/cli/polymurctl.js";
