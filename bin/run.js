#!/usr/bin/env node
// The entry as it was named before bin/run.cjs (whose header says why it is CommonJS): units and
// scripts that name bin/run.js (`sshca config --host` wrote such ExecStart lines) keep working.
import './run.cjs'
