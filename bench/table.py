"""The benchmark's printed summary: one block of rows per device, then the profile."""

from __future__ import annotations

from typing import Any


def table(result: dict[str, Any]) -> str:
    """The human-readable summary."""
    meta = result["meta"]
    lines = [f"PaDiM Inspector benchmark — {meta['date']}",
             f"machine: {meta['machine']}; load average at start "
             f"{meta['load_average_start']}, end {meta['load_average_end']}",
             f"images: {result['data']['label']} ({result['data']['n_train']} train, "
             f"{result['data']['n_test']} test)",
             f"command: {meta['command']}  (revision {meta['revision']}, "
             f"torch {meta['torch']}, {meta['torch_threads']} threads)",
             "malloc: " + ("glibc defaults (--system-malloc)" if _uses_system_malloc(result)
                           else "freed memory kept for reuse (padim_core.allocator)")]
    s = result["settings"]
    for dev, sec in (("CPU", result["cpu"]), ("GPU", result["gpu"])):
        if sec is None:
            continue
        if not sec.get("available", True):
            lines += ["", f"{dev}: {sec['note']}"]
            continue
        t = result.get("targets", {}) if dev == "CPU" else {}
        lines += ["", f"{dev}" + (f" ({sec['name']})" if "name" in sec else "")]
        if "inference" in sec:
            lines += _speed_lines(sec["inference"], sec["fit"], s, t)
        if "memory" in sec:
            lines += _memory_lines(sec["memory"], t)
        if "wrn" in sec:
            lines += _wrn_lines(sec["wrn"], t)
    prof = result["cpu"].get("profile") if result["cpu"] else None
    if prof:
        lines += _profile_lines(prof)
    return "\n".join(lines)


def _row(label: str, value: str, note: str = "") -> str:
    return f"  {label:<54} {value:>18}  {note}"


def _ms(value: float, spread: dict[str, Any]) -> str:
    return f"{value:.1f} ms (passes {spread['best']:.1f}–{spread['worst']:.1f})"


def _check(target: dict[str, Any] | None) -> str:
    if target is None:
        return ""
    return f"target ≤ {target['limit']:.4g}: {'met' if target['met'] else 'MISSED'}"


def _uses_system_malloc(result: dict[str, Any]) -> bool:
    """Whether the run left glibc's malloc defaults alone."""
    return bool(result["settings"].get("system_malloc"))


def _speed_lines(inf: dict[str, Any], fit: dict[str, Any], s: dict[str, Any],
                 t: dict[str, Any]) -> list[str]:
    """Rows of the predict and fit vs backbone cases."""
    return [
        f"  {s['backbone']}, d={s['d']}, crop {s['crop']}², batch {s['batch_size']}; "
        f"predict: per batch the best of {s['repeats']} passes (pass totals in "
        f"brackets); fit: best of {s['fit_repeats']} (worst in brackets)",
        _row(f"backbone-only forward, ms/image (n={inf['n_images']})",
             _ms(inf["backbone_ms_per_image"], inf["backbone_ms_spread"])),
        _row("predict, ms/image", _ms(inf["predict_ms_per_image"], inf["predict_ms_spread"])),
        _row("predict / backbone", f"{inf['ratio']:.3f}", _check(t.get("predict_ratio"))),
        _row("  in-run: predict / its own backbone time", f"{inf['ratio_in_run']:.3f}",
             _check(t.get("predict_ratio_in_run"))),
        _row(f"backbone-only forward over train, s (n={fit['n_images']})",
             f"{fit['backbone_s']:.2f} s ({fit['backbone_s_spread']['worst']:.2f} s)"),
        _row("fit, s", f"{fit['fit_s']:.2f} s ({fit['fit_s_spread']['worst']:.2f} s)"),
        _row("fit / backbone", f"{fit['ratio']:.3f}", _check(t.get("fit_ratio"))),
        _row("  in-run: fit / its own backbone time (median)", f"{fit['ratio_in_run']:.3f}",
             _check(t.get("fit_ratio_in_run"))),
    ]


def _memory_lines(mem: dict[str, Any], t: dict[str, Any]) -> list[str]:
    """Rows of the peak-RSS case (fit on N and 4N paths)."""
    lines = [
        _row("peak RSS, torch + backbone loaded", f"{mem['baseline_rss_mb']:.0f} MiB"),
        _row(f"peak RSS, backbone alone over N={mem['n']} paths",
             f"{mem['forward_rss_mb']:.0f} MiB"),
        _row(f"peak RSS, fit on N={mem['n']} paths", f"{mem['peak_rss_n_mb']:.0f} MiB",
             f"(+{mem['added_n_mb']:.0f})"),
        _row(f"peak RSS, fit on 4N={mem['n_4n']} paths", f"{mem['peak_rss_4n_mb']:.0f} MiB",
             f"(+{mem['added_4n_mb']:.0f})"),
        _row("peak RSS 4N / N", f"{mem['ratio']:.3f}", _check(t.get("memory_ratio"))),
    ]
    for tag, key in (("N", "phase_peak_n_mb"), ("4N", "phase_peak_4n_mb")):
        phases = ", ".join(f"{k} {v:.0f}" for k, v in mem[key].items())
        lines.append(f"      sampled RSS peak by fit stage, {tag} (MiB): {phases}")
    if "cuda_peak_n_mb" in mem:
        lines.append(_row("CUDA max allocated, fit N / 4N",
                          f"{mem['cuda_peak_n_mb']:.0f} / {mem['cuda_peak_4n_mb']:.0f} MiB"))
    return lines


def _wrn_lines(w: dict[str, Any], t: dict[str, Any]) -> list[str]:
    """Rows of the Wide-ResNet d = 550 case."""
    phases = ", ".join(f"{k} {v:.0f}" for k, v in w["phase_peak_mb"].items())
    lines = [
        _row(f"{w['backbone']} ({w['weights']}) d={w['d']}: fit, n={w['n_train']}",
             f"{w['fit_s']:.1f} s"),
        _row("  predict, ms/image (backbone-only)",
             f"{w['predict_ms_per_image']:.0f} ms ({w['backbone_ms_per_image']:.0f})"),
        _row("  peak RSS of fit", f"{w['peak_rss_mb']:.0f} MiB", _check(t.get("wrn_peak_rss_mb"))),
        f"      sampled RSS peak by fit stage (MiB): {phases}",
    ]
    if "cuda_peak_fit_mb" in w:
        lines.append(_row("  CUDA max allocated, fit / predict",
                          f"{w['cuda_peak_fit_mb']:.0f} / {w['cuda_peak_predict_mb']:.0f} MiB"))
    return lines


def _profile_lines(prof: dict[str, Any]) -> list[str]:
    """Rows of ``--profile``: step breakdowns, hand-timed pieces, top functions."""
    lines = ["", "Profile (CPU, cProfile cumulative time of the engine's steps)",
             "  predict, ms/image:"]
    lines += [_row(k, f"{v:.2f}") for k, v in prof["predict_ms_per_image"].items()]
    lines.append("  predict, one batch timed piece by piece, ms/image:")
    lines += [_row(k, f"{v:.2f}") for k, v in prof["predict_pieces_ms_per_image"].items()]
    lines.append("  fit, s:")
    lines += [_row(k, f"{v:.3f}") for k, v in prof["fit_s"].items()]
    lines.append("  fit, pieces, s:")
    lines += [_row(k, f"{v:.3f}") for k, v in prof["fit_pieces_s"].items()]
    lines += ["", "  predict, top functions by own time:", prof["predict_top"],
              "", "  fit, top functions by own time:", prof["fit_top"]]
    return lines
