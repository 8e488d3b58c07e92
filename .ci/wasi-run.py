#!/usr/bin/env python3
"""Run one wasm32-wasip1 program (a test binary) under Wasmtime, as cargo's target runner.

Usage: wasi-run.py PROGRAM.wasm [ARGS...]   (needs `pip install wasmtime`; .ci/wasm.sh does it)

The program gets its arguments, this process's environment, stdio, and the current directory
preopened as "." (cargo starts tests in the package root: proptest finds its regression files
there). Exit code: the program's own (proc_exit), or 134 when it traps (a Rust panic aborts on
wasm32, which ends the whole test binary).
"""
import os
import sys

import wasmtime


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    program, args = sys.argv[1], sys.argv[2:]
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [program, *args]
    wasi.inherit_env()
    wasi.inherit_stdin()
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.preopen_dir(os.getcwd(), ".")
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, program))
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        return e.code
    except wasmtime.Trap as e:
        sys.stdout.flush()
        print(f"\nwasi-run: {os.path.basename(program)} trapped (a panic aborts on wasm32):\n{e}",
              file=sys.stderr)
        return 134
    return 0


if __name__ == "__main__":
    sys.exit(main())
