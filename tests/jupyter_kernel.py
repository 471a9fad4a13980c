"""Drives a real Deno Jupyter kernel through nbclient (the machinery of `deno task notebooks`).

Usage: /usr/bin/python3 tests/jupyter_kernel.py NOTEBOOK_IN NOTEBOOK_OUT

Executes NOTEBOOK_IN with the project's kernelspec (JUPYTER_PATH must point at it). A cell whose
metadata holds {"interrupt_after": S} is interrupted (KernelManager.interrupt_kernel, i.e. SIGINT,
what Stop does in Jupyter and VS Code) after S seconds, and execution goes on with the next cell.
Writes the executed notebook, outputs included, to NOTEBOOK_OUT. Exit 1 when a cell fails or the
kernel dies.
"""
import sys

import nbformat
from nbclient import NotebookClient


def main(src: str, dst: str) -> int:
    nb = nbformat.read(src, as_version=4)

    def timeout_for(cell):
        # nbclient interrupts the kernel when a cell's timeout passes (interrupt_on_timeout), then
        # keeps waiting for that cell's reply.
        return cell.metadata.get("interrupt_after", 120)

    client = NotebookClient(
        nb,
        kernel_name="deno",
        timeout_func=timeout_for,
        interrupt_on_timeout=True,
        resources={"metadata": {"path": "notebooks"}},
    )
    interrupts = []
    handle_timeout = client._async_handle_timeout

    async def counted(timeout, cell=None):
        interrupts.append(timeout)
        return await handle_timeout(timeout, cell)

    client._async_handle_timeout = counted
    try:
        client.execute()
    finally:
        nbformat.write(nb, dst)
        print(f"interrupts sent: {len(interrupts)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
