// Run one wasm32-wasip1 program (a test binary) under Node's WASI, as cargo's target runner.
// Usage: node --no-warnings wasi-run.mjs PROGRAM.wasm [ARGS...]   (Node >= 20)
// Same contract as wasi-run.py: arguments, environment, stdio, the current directory preopened
// as "."; exit code the program's own, 134 when it traps (a Rust panic aborts on wasm32).
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import process from 'node:process';
import { WASI } from 'node:wasi';

const [program, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [program, ...args],
  env: process.env,
  preopens: { '.': process.cwd() },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(program));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
try {
  process.exitCode = wasi.start(instance);
} catch (e) {
  console.error(`\nwasi-run: ${basename(program)} trapped (a panic aborts on wasm32):\n${e}`);
  process.exitCode = 134;
}
