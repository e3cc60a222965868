"""Turn collected facts into a self-contained HTML page (figures embedded as base64 PNG) and a markdown summary."""

from __future__ import annotations

import base64
import html

from posesyn_core.eem.keypoints2d import keypoints2d_markdown
from posesyn_core.errors import ConfigError
from posesyn_core.loop.rounds import loop_markdown
from posesyn_core.report.build import Report
from posesyn_core.report.seeds import seeds_markdown


def _fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def results_markdown(rep: Report) -> str:
    rows, sets = rep.facts["results"], rep.facts["test_sets"]
    if not rows:
        return "_no evaluate results yet_"
    head = "| | " + " | ".join(f"{t} MPJPE | {t} PA-MPJPE | vs (a)" for t in sets) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(sets)]
    for r in rows:
        cells = []
        for t in sets:
            m = r["sets"].get(t, {})
            change = m.get("mpjpe_change")
            cells += [_fmt(m.get("mpjpe")), _fmt(m.get("pa_mpjpe")), "" if change is None else f"{change:+.1%}"]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def family_markdown(rep: Report, test_set: str) -> str:
    rows = [r for r in rep.facts["results"] if test_set in r["families"]]
    if not rows:
        return ""
    families = sorted(rows[0]["families"][test_set])
    lines = ["| family | samples | " + " | ".join(r["label"].split(" ")[0] for r in rows) + " |",
             "|---|---|" + "---|" * len(rows)]  # fmt: skip
    for fam in families:
        n = rows[0]["families"][test_set][fam].get("n", "")
        vals = [_fmt(r["families"][test_set].get(fam, {}).get("mpjpe")) for r in rows]
        lines.append(f"| {fam} | {n} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def stages_markdown(rep: Report) -> str:
    lines = ["| stage | done | seconds | counts |", "|---|---|---|---|"]
    for s in rep.facts["stages"]:
        counts = ", ".join(f"{k}={v}" for k, v in s["counts"].items())
        lines.append(f"| {s['stage']} | {'yes' if s['done'] else 'no'} | {_fmt(s['seconds'])} | {counts} |")
    return "\n".join(lines)


def hard_set_markdown(rep: Report) -> str:
    from posesyn_core.eem.evaluate import format_report

    return format_report(rep.facts["hard_set"]) if rep.facts.get("hard_set") else "_no hidden 3D to check against_"


def ablation_markdown(rep: Report) -> str:
    from posesyn_core.msm.ablation import format_table

    return format_table(rep.facts["mrinit_ablation"]) if rep.facts.get("mrinit_ablation") else "_not available_"


def consistency_markdown(check: dict) -> str:
    """What the consistency check dropped, with reasons; its effect on the fine-tuned TPE is its results row."""
    where = "this run" if check["variant"] == "run" else "variant `consistency`"
    pose = "off" if check["max_pose_mm"] is None else f"{check['max_pose_mm']:.0f} mm"
    caption = "off" if check["min_caption_score"] is None else f"{check['min_caption_score']:+.2f}"
    scores = check["caption_score"]
    lines = [f"{where}: pose limit {pose}, minimum caption score {caption} ({check['distractors']} distractors); "
             f"kept {check['kept']} of {check['generated']} motions, {check['hard_poses_without_motion']} hard poses "
             "lost all of theirs. Effect on the fine-tuned TPE: the results row `PoseSyn + consistency check`.", "",
             "| dropped for | motions |", "|---|---|"]  # fmt: skip
    lines += [f"| {reason} | {n} |" for reason, n in check["dropped_by_reason"].items()]
    lines.append(f"| total (a motion can fail both) | {check['dropped']} |")
    if scores.get("kept"):
        lines += ["", "| caption score | mean | median | motions |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['mean']:+.3f} | {v['median']:+.3f} | {v['n']} |" for k, v in scores.items() if v]
    if check["examples"]:
        lines += ["", "| dropped motion | caption | closest frame (mm) | caption score | reasons |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {d['id']} | {d['caption']} | {d['best_pa_mpjpe_mm']:.1f} | {_fmt(d['caption_score'], 3)} "
                  f"| {', '.join(d['reasons'])} |" for d in check["examples"]]  # fmt: skip
    return "\n".join(lines)


def tau_markdown(rep: Report) -> str:
    lines = ["| tau (mm) | pass rate | kept frames |", "|---|---|---|"]
    for r in rep.facts["tau_sweep"]:
        tau = "none (all kept)" if r["tau_mm"] is None else f"{r['tau_mm']:.0f}"
        lines.append(f"| {tau} | {r['pass_rate']:.1%} | {r['kept']} |")
    return "\n".join(lines)


def markdown(rep: Report) -> str:
    run = rep.facts["run"]
    parts = [f"# PoseSyn run `{run['name']}`", f"root: `{run['root']}`, seed {run['seed']}", "",
             "## Results (MPJPE / PA-MPJPE, mm; lower is better)", results_markdown(rep), ""]  # fmt: skip
    wild_first = sorted(rep.facts["test_sets"], key=lambda t: "wild" not in t)
    for t in wild_first[:1]:
        parts += [f"### Per motion family, {t} (MPJPE, mm)", family_markdown(rep, t), ""]
    if rep.facts.get("seeds"):
        parts += ["## Over seeds (`posesyn experiment seeds`)", seeds_markdown(rep.facts["seeds"])]
    if rep.facts.get("loop"):
        parts += ["## Rounds (`posesyn experiment loop`)", loop_markdown(rep.facts["loop"])]
    parts += ["## EEM: does the hard set hold real failures? (hidden 3D truth)", hard_set_markdown(rep), "",
              "## MSM: MR_init ablation (PA-MPJPE of generated frames vs the hard pose's true 3D)",
              ablation_markdown(rep), ""]  # fmt: skip
    if rep.facts.get("consistency"):
        parts += ["## MSM: consistency check (motions drifted from their hard pose or caption)",
                  consistency_markdown(rep.facts["consistency"]), ""]  # fmt: skip
    if rep.facts.get("keypoints2d"):
        parts += ["## EEM on estimated 2D keypoints (`posesyn experiment keypoints2d`)",
                  keypoints2d_markdown(rep.facts["keypoints2d"])]  # fmt: skip
    parts += ["## Filter: tau sweep", tau_markdown(rep), "",
              "## Stages", stages_markdown(rep)]  # fmt: skip
    if rep.notes:
        parts += ["", "## Notes", *[f"- {n}" for n in rep.notes]]
    return "\n".join(parts) + "\n"


def _md_table_to_html(md: str) -> str:
    """Our markdown tables (and plain lines) as HTML, so the page needs no markdown library."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            head, *body = rows
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")  # fmt: skip
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                rows.append(cells)
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line.strip('_'))}</p>")
    flush()
    return "\n".join(out)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def page(rep: Report) -> str:
    f = rep.figures
    run = rep.facts["run"]
    sections = [
        ("Results", _md_table_to_html(results_markdown(rep))
         + (_img(f["results"], "results") if "results" in f else "")),
        *[(f"Per motion family: {t}", _md_table_to_html(family_markdown(rep, t))) for t in rep.facts["test_sets"]],
        ("Over seeds", _md_table_to_html(seeds_markdown(rep.facts["seeds"])) if rep.facts.get("seeds") else ""),
        ("Rounds", (_md_table_to_html(loop_markdown(rep.facts["loop"])) if rep.facts.get("loop") else "")
         + (_img(f["loop"], "rounds") if "loop" in f else "")),
        ("EEM: score histogram and the hard set", (_img(f["eem_histogram"], "eem") if "eem_histogram" in f else "")
         + _md_table_to_html(hard_set_markdown(rep))),
        ("Hard poses (top of the EEM ranking) with captions",
         _img(f["hard_gallery"], "gallery") if "hard_gallery" in f else ""),
        ("MSM: MR_init ablation", _md_table_to_html(ablation_markdown(rep))),
        ("MSM: consistency check", _md_table_to_html(consistency_markdown(rep.facts["consistency"]))
         if rep.facts.get("consistency") else ""),
        ("EEM on estimated 2D keypoints", _md_table_to_html(keypoints2d_markdown(rep.facts["keypoints2d"]))
         if rep.facts.get("keypoints2d") else ""),
        ("Generated motions", "".join(_img(f[k], k) for k in sorted(f) if k.startswith("motion_strip_"))),
        ("Synthetic samples (labels projected)",
         _img(f["contact_sheet"], "contact sheet") if "contact_sheet" in f else ""),
        ("Filter", (_img(f["filter_histogram"], "filter") if "filter_histogram" in f else "")
         + _md_table_to_html(tau_markdown(rep))),
        ("Stages", _md_table_to_html(stages_markdown(rep))),
    ]  # fmt: skip
    if rep.notes:
        sections.append(("Notes", "".join(f"<p>{html.escape(n)}</p>" for n in rep.notes)))
    body = "\n".join(f"<h2>{html.escape(t)}</h2>\n{c}" for t, c in sections if c)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
             "img{max-width:100%;display:block;margin:.5em 0}")  # fmt: skip
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>PoseSyn report: {html.escape(run['name'])}"
            f"</title><style>{style}</style></head><body><h1>PoseSyn run {html.escape(run['name'])}</h1>"
            f"<p>root {html.escape(run['root'])}, seed {run['seed']}</p>{body}</body></html>\n")


RESULTS_BEGIN = "<!-- BEGIN GENERATED by `posesyn report --results-page`: edits here are overwritten -->"
RESULTS_END = "<!-- END GENERATED -->"


def results_page(text: str, summary: str, provenance: str) -> str:
    """A results page (`docs/results.md`) with its generated block replaced by a run's summary, headings one level
    down, under the line saying how it was made; the page's hand-written parts are kept byte for byte."""
    start, end = text.find(RESULTS_BEGIN), text.find(RESULTS_END)
    if start < 0 or end < start:
        raise ConfigError(f"results page: the markers {RESULTS_BEGIN!r} ... {RESULTS_END!r} are missing")
    body = "\n".join("#" + line if line.startswith("#") else line for line in summary.strip().splitlines())
    return f"{text[:start]}{RESULTS_BEGIN}\n{provenance.strip()}\n\n{body}\n{text[end:]}"
