#!/usr/bin/env node
// Entry of the `docdistill` command: the bundled CLI lives in dist/cli.js.
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const cli = path.join(__dirname, '..', 'dist', 'cli.js');
if (!fs.existsSync(cli)) {
  console.error(`docdistill: ${cli} is missing. Run "npm run build" in ${path.join(__dirname, '..')} first.`);
  process.exit(2);
}
require(cli).runCli(process.argv.slice(2), cli).then(
  (code) => { process.exitCode = code; },
  (e) => { console.error(`docdistill: ${e && e.message ? e.message : e}`); process.exitCode = 1; },
);
