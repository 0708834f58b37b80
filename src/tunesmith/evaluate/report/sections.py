"""The sections of a run report, each built from the run's files; a missing file gives a short note instead."""

from __future__ import annotations

import math
from typing import Any

from tunesmith.evaluate.report import plots
from tunesmith.evaluate.report.markup import esc, image, note, num, pct, section, signed, table
from tunesmith.evaluate.report.run_files import RunFiles

LOWER_IS_BETTER = {"loss", "perplexity"}


def overview(run: RunFiles) -> str:
    s, status = run.summary or {}, run.status or {}
    cards = [
        ("status", status.get("status", "unknown")),
        ("model", s.get("model", "–")),
        ("method", s.get("method", "–")),
        ("steps", f"{s.get('steps', '–')} / {s.get('planned_steps', '–')}"),
        ("val loss base → tuned", f"{num(s.get('base_val_loss'))} → {num(s.get('tuned_val_loss'))}"),
        ("trainable params", num(s.get("trainable_params"))),
        ("train speed", f"{num(s.get('train_tokens_per_s'), 0)} tok/s"),
        ("wall time", f"{num(s.get('wall_seconds'), 0)} s"),
    ]
    html = '<div class="cards">' + "".join(
        f"<div class='card'><span>{esc(k)}</span><b>{esc(v)}</b></div>" for k, v in cards
    )
    html += "</div>"
    if not run.summary:
        html += note("No summary.json: training has not finished.")
    return section("overview", "Overview", html)


def training(run: RunFiles) -> str:
    plot = plots.loss_curves(run.metrics)
    if plot is None:
        return section("training", "Training", note("No metrics.jsonl rows with losses yet."))
    s = run.summary or {}
    text = note(
        f"Best checkpoint: step {esc(s.get('best_step', '–'))}"
        + (" · stopped early" if s.get("stopped_early") else "")
        + f" · {num(s.get('train_tokens_seen'))} training tokens seen."
    )
    return section("training", "Training: loss curves", image(plot, "train and validation loss per step") + text)


def eval_systems(report: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(system name, headline metrics) from eval.json: its `systems` list, or the older base/tuned pair."""
    if isinstance(report.get("systems"), list):
        return [(str(s.get("name", "?")), dict(s.get("metrics") or {})) for s in report["systems"]]
    out = []
    for name in ("base", "tuned"):
        scores = report.get(name) or {}
        out.append((name, {k: v for k, v in scores.items() if k in {"loss", "perplexity", "exact_match"}}))
    return out


def _error_bars(report: dict[str, Any], metrics: list[str]) -> dict[str, list[tuple[float, float]]]:
    """(low, high) per headline metric of each system with intervals in eval.json (a missing one: no bar)."""
    out = {}
    for s in report.get("systems", []):
        entry = s.get(report.get("scoring", ""), s.get("prior", {})) or {}
        intervals, values = entry.get("intervals") or {}, s.get("metrics") or {}
        if intervals:
            spans = [intervals.get(m) or [values.get(m, math.nan)] * 2 for m in metrics]
            out[str(s.get("name"))] = [(float(low), float(high)) for low, high in spans]
    return out


def _metric_cell(value: Any, best: bool) -> str:
    text = num(value)
    return f"<span class='good'>{text}</span>" if best else text


def _system_rows(systems: list[tuple[str, dict[str, Any]]], metrics: list[str]) -> list[list[str]]:
    """One row per system; the best value of each metric (when systems differ) in green."""
    rows = []
    for name, values in systems:
        cells = [esc(name)]
        for metric in metrics:
            column = [m.get(metric) for _, m in systems if isinstance(m.get(metric), int | float)]
            pick = min if metric in LOWER_IS_BETTER else max
            best = len(column) > 1 and values.get(metric) == pick(column)
            cells.append(_metric_cell(values.get(metric), best))
        rows.append(cells)
    return rows


def evaluation(run: RunFiles) -> str:
    if not run.eval:
        return section(
            "evaluation",
            "Metrics before and after, and baselines",
            note(
                "Not evaluated yet: run <code>tunesmith eval RUN</code> to compare the tuned model with base-model "
                "zero-shot and k-shot baselines."
            ),
        )
    systems = eval_systems(run.eval)
    metrics = list(dict.fromkeys(k for _, m in systems for k, v in m.items() if isinstance(v, int | float)))
    tables = table(["system", *metrics], _system_rows(systems, metrics))
    raw = [s for s in run.eval.get("systems", []) if isinstance(s, dict)]
    hows = [h for h in ("label_likelihood", "generation") if any(isinstance(s.get(h), dict) for s in raw)]
    for how in hows if len(hows) > 1 else []:  # both scorings ran: show each, the headline uses one of them
        title = "by " + how.replace("_", " ")
        scored = [(s.get("name", "?"), s[how]) for s in raw if isinstance(s.get(how), dict)]
        if scored:
            rows_n = {num(part.get("rows")) for _, part in scored}
            caption = f"{title} ({', '.join(sorted(rows_n))} rows)"
            pairs = [(str(name), dict(part.get("metrics") or {})) for name, part in scored]
            names = list(dict.fromkeys(k for _, m in pairs for k in m))
            tables += table(["system", *names], _system_rows(pairs, names), caption=caption)
    scoring = run.eval.get("scoring")
    text = note(
        f"{num(run.eval.get('rows'))} rows from {esc(run.eval.get('data', '?'))}"
        + (f"; headline scoring: <b>{esc(scoring)}</b>" if scoring else "")
        + ". Best value per metric in green."
    )
    bar_metrics = [m for m in metrics if m not in LOWER_IS_BETTER and m != "tokens"]
    plot = None
    if bar_metrics:
        series = {name: [float(v.get(m, math.nan)) for m in bar_metrics] for name, v in systems}
        plot = plots.grouped_bars(bar_metrics, series, "score", errors=_error_bars(run.eval, bar_metrics) or None)
        text += note("Error bars: 95% bootstrap intervals.") if "bootstrap" in run.eval else ""
    if run.eval.get("collapse_warning"):
        text = f'<p class="flag"><b>Warning:</b> {esc(run.eval["collapse_warning"])}</p>' + text
    body = tables + text + image(plot, "metrics per system")
    return section("evaluation", "Metrics before and after, and baselines", body)


def forgetting(run: RunFiles) -> str:
    f = (run.audit or {}).get("forgetting")
    if not f:
        return section("forgetting", "Forgetting", note("Not audited yet: run <code>tunesmith audit RUN</code>."))
    rows = [
        [
            "reference perplexity",
            num(f["perplexity"]["base"]),
            num(f["perplexity"]["tuned"]),
            signed(f["perplexity"]["change"]),
        ],
        ["reference loss (nats/token)", num(f["loss"]["base"]), num(f["loss"]["tuned"]), signed(f["loss"]["change"])],
        ["KL(base ‖ tuned) per token", "0", num(f["kl_base_tuned"]), signed(f["kl_base_tuned"])],
    ]
    if task := f.get("earlier_task"):
        acc = task["accuracy"]
        rows.append(
            [
                f"earlier task accuracy ({esc(task['method'])})",
                pct(acc["base"]),
                pct(acc["tuned"]),
                f"{acc['change'] * 100:+.1f} pts",
            ]
        )
    text = note(
        f"Reference: {esc(f['reference'])} · {num(f['reference_rows'])} rows, {num(f['reference_tokens'])} scored "
        "tokens. Higher perplexity and KL mean the tuned model moved further from the base on general text."
        + (
            f" Earlier task: {esc(f['earlier_task']['file'])}, {num(f['earlier_task']['rows'])} rows."
            if task
            else " No earlier task given (<code>--set audit.earlier_task=FILE</code>)."
        )
    )
    return section("forgetting", "Forgetting", table(["measure", "base", "tuned", "change"], rows) + text)


def _ci(entry: dict[str, Any]) -> str:
    return f"{pct(entry['mean'])} <span class='note'>[{pct(entry['low'])}, {pct(entry['high'])}]</span>"


def _compare_row(label: str, entry: dict[str, Any]) -> list[str]:
    d = entry["difference"]
    change = f"{d['mean'] * 100:+.1f} pts <span class='note'>[{d['low'] * 100:+.1f}, {d['high'] * 100:+.1f}]</span>"
    flag = "<span class='bad'>amplified</span>" if entry["amplified"] else "–"
    return [esc(label), num(entry["base"]["n"]), _ci(entry["base"]), _ci(entry["tuned"]), change, flag]


BIAS_HEADER = ["", "pairs", "base [95% CI]", "tuned [95% CI]", "tuned − base [95% CI]", "flag"]


def _crows(crows: dict[str, Any]) -> str:
    items = [("overall", crows["overall"]), *sorted(crows["by_type"].items())]
    rows = [_compare_row(label, entry) for label, entry in items]
    labels = [label for label, _ in items]
    series = {k: [e[k]["mean"] for _, e in items] for k in ("base", "tuned")}
    errors = {k: [(e[k]["low"], e[k]["high"]) for _, e in items] for k in ("base", "tuned")}
    plot = plots.grouped_bars(labels, series, "stereotype preferred", errors, 0.5, [plots.BASE, plots.TUNED])
    return (
        f"<h3>CrowS-Pairs ({num(crows['pairs'])} pairs)</h3>"
        + note(esc(crows["metric"]) + f". Scoring speed: {num(crows['pairs_per_s'], 1)} pairs/s (both models).")
        + table(BIAS_HEADER, rows)
        + image(plot, "CrowS-Pairs stereotype preference by bias type")
    )


def _winobias(wino: dict[str, Any]) -> str:
    items = [("overall", wino["pro_preferred"]), *sorted(wino["by_type"].items())]
    gap = wino["logprob_gap"]
    return (
        f"<h3>WinoBias ({num(wino['pairs'])} pro/anti pairs)</h3>"
        + note(
            esc(wino["metric"]) + f". Mean log-likelihood gap pro − anti: base {num(gap['base']['mean'])}, "
            f"tuned {num(gap['tuned']['mean'])} nats."
        )
        + table(BIAS_HEADER, [_compare_row(label, entry) for label, entry in items])
    )


def _token(text: str) -> str:
    """A decoded token as a chip; spaces and newlines made visible."""
    shown = text.replace(" ", "␣").replace("\n", "↵") or "∅"
    return f"<code class='tok'>{esc(shown)}</code>"


def _prob(value: float) -> str:
    return f"{value:.2%}" if value >= 0.001 else f"{value:.1e}"


def _probes(probes: list[dict[str, Any]]) -> str:
    summary = [
        [
            esc(p["template"]),
            esc(", ".join(p["groups"])),
            num(p["base"]["mean_js"]),
            num(p["tuned"]["mean_js"]),
            signed(p["js_change"]),
        ]
        for p in probes
    ]
    body = (
        "<h3>Templated probes</h3>"
        + note(
            "Mean pairwise Jensen-Shannon divergence (nats) between the groups' next-token distributions: 0 means "
            "every group gets the same continuations; a rise from base to tuned means the groups drifted apart."
        )
        + table(["template", "groups", "base JS", "tuned JS", "change"], summary, text_cols=[1])
    )
    for p in probes:
        words = p["words"]
        rows = []
        for group in p["groups"]:
            row = [esc(group)]
            for model in ("base", "tuned"):
                row.append(" ".join(_token(t) for t in p[model]["top"][group]))
            for word in words:
                row.append(" → ".join(_prob(p[m]["word_probs"][group][word]) for m in ("base", "tuned")))
            rows.append(row)
        header = [
            "group",
            "base top-5 next tokens",
            "tuned top-5 next tokens",
            *(f"p({w})" for w in words),
        ]
        body += f"<h4>{esc(p['template'])}</h4>" + table(header, rows, text_cols=[1, 2])
    if any(p["words"] for p in probes):
        body += note("p(word): probability of the word's first token as the next token, base → tuned.")
    return body


def bias(run: RunFiles) -> str:
    b = (run.audit or {}).get("bias")
    if not b:
        return section("bias", "Bias audit", note("Not audited yet: run <code>tunesmith audit RUN</code>."))
    flags = b.get("amplification", [])
    body = (
        "<div class='flag'><b>Bias amplified</b> (tuned above base beyond the paired 95% CI):<br>"
        + "<br>".join(esc(f) for f in flags)
        + "</div>"
        if flags
        else "<div class='ok'>No amplification: no measure where tuned exceeds base beyond the paired 95% CI.</div>"
    )
    if b.get("crows_pairs"):
        body += _crows(b["crows_pairs"])
    if b.get("winobias"):
        body += _winobias(b["winobias"])
    if b.get("probes"):
        body += _probes(b["probes"])
    for skipped in b.get("skipped", []):
        body += note("Skipped: " + esc(skipped))
    return section("bias", "Bias audit", body)


def data(run: RunFiles) -> str:
    report, check = run.data_report or {}, run.data_check or {}
    if not report and not check:
        return section("data", "Data", note("No data_report.json or data_check.json."))
    rows = []
    for split in ("train", "val"):
        part = report.get(split) or {}
        lengths = (check.get("lengths") or {}).get(split) or {}
        if part or lengths:
            rows.append(
                [
                    split,
                    num(part.get("encoded")),
                    num(part.get("tokens")),
                    num(part.get("trainable_tokens")),
                    num(part.get("truncated")),
                    num(lengths.get("median")),
                    num(lengths.get("p95")),
                    num(lengths.get("max")),
                ]
            )
    body = note(
        f"Format {esc(report.get('format', '?'))} · data hash {esc(report.get('data_hash', '?'))} · "
        f"rejected rows {num(report.get('rejected_rows'))}."
    )
    body += table(
        ["split", "examples", "tokens", "trained tokens", "truncated", "median len", "p95 len", "max len"], rows
    )
    if check:
        verdict = "passed" if check.get("ok") else "<span class='bad'>failed</span>"
        body += note(f"Data check {verdict}: {num(check.get('errors'))} errors, {num(check.get('warnings'))} warnings.")
        findings = [
            [esc(f.get("kind", "?")), esc(f.get("severity", "")), esc(f.get("message", f.get("detail", "")))]
            for f in (check.get("findings") or [])[:20]
            if isinstance(f, dict)
        ]
        if findings:
            body += table(["finding", "severity", "detail"], findings, text_cols=[2])
    return section("data", "Data summary", body)


def config(run: RunFiles) -> str:
    return section("config", "Config", f"<pre>{esc(run.config_text or '(no config.yaml)')}</pre>")
