#!/usr/bin/env node
import "../cli/polymurctl.ts";
