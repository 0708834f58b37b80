"""`tunesmith doctor`: what this machine and environment run, and whether it matches the lock."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from tunesmith import environment as env
from tunesmith.cli.output import out
from tunesmith.train.precision import bf16_matmul_speedup, cpu_supports_bf16


def _facts() -> dict[str, Any]:
    lock = env.lock_path()
    return {
        "versions": env.library_versions(),
        "lock": str(lock) if lock else None,
        "lock_differences": env.lock_differences(env.read_lock(lock)) if lock else None,
        "git": env.git_commit(),
        "cpu": env.cpu_features(),
        "bf16_matmul_speedup": bf16_matmul_speedup() if cpu_supports_bf16() else None,
        "compiler": env.compiler(),
        "allocator": env.allocator(),
        "accelerator": env.accelerator(),
        "cache": env.cache_usage(),
        "hub": env.hub_reachability(),
        "runtime_patches": _patch_versions(),
    }


def _patch_versions() -> dict[str, list[str]]:
    """Per runtime patch (`tunesmith.compat`), the installed libraries outside the versions it was checked on."""
    from tunesmith.compat import attention, environment, fused, packed_linear, peft_casts
    from tunesmith.compat.patches import unchecked_versions

    return {
        m.__name__.rsplit(".", 1)[-1]: unchecked_versions(m.CHECKED_ON)
        for m in (environment, attention, fused, peft_casts, packed_linear)
    }


def _patch_line(patches: dict[str, list[str]]) -> str:
    off = {name: lines for name, lines in patches.items() if lines}
    if not off:
        return f"{', '.join(patches)}: checked on the installed library versions"
    shown = "; ".join(f"{name}: {', '.join(lines)}" for name, lines in off.items())
    return f"[yellow]not checked on the installed versions[/]: {shown} (run `make test`)"


def _lock_line(facts: dict[str, Any]) -> str:
    if facts["lock"] is None:
        return "no lock here (tunesmith is installed as a package; pyproject.toml's ranges apply)"
    differences = facts["lock_differences"]
    if not differences:
        return f"every package matches {facts['lock']}"
    shown = ", ".join(f"{n} {found or 'missing'} (locked {want})" for n, (want, found) in list(differences.items())[:6])
    more = f" and {len(differences) - 6} more" if len(differences) > 6 else ""
    return f"[yellow]{len(differences)} differ from the lock[/]: {shown}{more}; `make install` restores it"


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON")] = False) -> None:
    """Print Python, library versions (against the lock), CPU features, compiler, allocator, GPU, cache and Hub."""
    facts = _facts()
    if as_json:
        out.print_json(json.dumps(facts, default=str))
        return
    table = Table(title="tunesmith doctor", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("found")
    for name, version in facts["versions"].items():
        table.add_row(name, version or "[dim]not installed[/]")
    table.add_row("lock", _lock_line(facts))
    git = facts["git"]
    table.add_row("git", f"{git['commit'][:12]}{' (uncommitted changes)' if git['dirty'] else ''}" if git else "-")
    cpu = facts["cpu"]
    table.add_row("cpu", f"{cpu['model']} · {cpu['cores']} cores · torch threads {cpu['torch_threads']}")
    bf16, amx = _yes(cpu["avx512_bf16"]), _yes(cpu["amx"])
    table.add_row("cpu features", f"{cpu['capability']} · AVX512-BF16 {bf16} · AMX {amx}")
    if (speedup := facts["bf16_matmul_speedup"]) is not None:
        chosen = "bf16 autocast" if speedup > 1 else "fp32"
        table.add_row("bf16 matmuls", f"{speedup:.2f}x the fp32 rate here: precision auto trains in {chosen}")
    no_compiler = "[yellow]none: train.fused_ops falls back to the model's own code[/]"
    table.add_row("C++ compiler", facts["compiler"] or no_compiler)
    alloc = facts["allocator"]
    table.add_row("jemalloc", f"{alloc['jemalloc'] or 'not installed'}{' (in use)' if alloc['in_use'] else ''}")
    acc = facts["accelerator"]
    table.add_row("GPU", ", ".join(acc["devices"]) + f" (CUDA {acc['torch_cuda']})" if acc["cuda"] else "none (CPU)")
    cache = facts["cache"]
    table.add_row("cache", f"{cache['path']} ({cache['bytes'] / 1e6:,.0f} MB)")
    table.add_row("hub", facts["hub"])
    table.add_row("runtime patches", _patch_line(facts["runtime_patches"]))
    out.print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
