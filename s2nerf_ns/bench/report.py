"""Markdown tables of a privacy benchmark's ``results.json``, and the README block generated from them.

``s2nerf-bench report --results docs/results/privacy_cpu/results.json --readme README.md`` rewrites the block
between ``<!-- results:privacy -->`` and ``<!-- /results -->`` in the README; ``--check`` only compares (exit
status 1 when the README's tables differ from what the results give). Numbers are never typed by hand.

Columns (mean ± sample standard deviation over seeds; without ± when there is one seed):

- **victim PSNR**: the victim NeRF on the held-out views.
- **attacker PSNR**: the gradient attacker's raw render, no colour map (the paper's metric).
- **attacker − floor**, **embedding attack − floor**: each attack's own margin over the floor.
- **leakage**: the best attack (gradient attacker or embedding attack) minus the floor (the best of the
  constant image and the ``lambda_g = 0`` surrogate), after each render's scene colour map (``cmPSNR`` in dB,
  ``cm lum-SSIM``), and fit-free (``NMI``). Positive means the server learned something of the scene.
- **gradient share**: the gradient attacker minus the embedding attack (what the gradient channel adds to
  what the server's own embeddings already show).
- **private**: the same leakage, scored only on the pixels of the private items (photos, posters, documents).
- **dummies**: the attacker's copy of the training photos, against the same floors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Optional

BEGIN = "<!-- results:privacy -->"
END = "<!-- /results -->"


def _fmt(stat: Optional[dict], digits: int, signed: bool = False) -> str:
    if not stat or not math.isfinite(stat["mean"]):
        return "n/a"
    sign = "+" if signed else ""
    text = f"{stat['mean']:{sign}.{digits}f}"
    if stat.get("n", 1) > 1:
        text += f" ± {stat['std']:.{digits}f}"
    return text


def _rows(results: dict) -> List[dict]:
    from s2nerf_ns.bench.privacy_summary import summarise

    summary = summarise(results)  # always from the cells, so the tables depend on nothing else
    order = list(dict.fromkeys(c["room"] for c in results["cells"].values()))
    defenses = list(dict.fromkeys(c["defense"] for c in results["cells"].values()))
    return sorted(summary.values(), key=lambda e: (order.index(e["room"]), defenses.index(e["defense"])))


def privacy_tables(results: dict) -> str:
    """The benchmark's two markdown tables (SMA; SSMA and dummies), with a one-line header of the setting."""
    preset = results.get("preset_values", {})
    env = results.get("environment", {})
    prov = results.get("provenance", {})
    lines = [
        f"Preset `{results.get('preset')}`: {preset.get('resolution')} px rooms, {preset.get('steps')} victim steps at "
        f"{preset.get('rays')} rays; seeds per (room, defense): {seeds_text(results)}; leaked pose "
        f"{results.get('pose', 'known')}; {env.get('device', '?')}, torch {env.get('torch', '?')}; "
        f"{provenance_text(prov)}.",
        "",
        "SMA (the gradient attacker at the end of victim training); margins over the floor (cmPSNR in dB):",
        "",
        "| room | defense | victim PSNR | attacker PSNR | attacker − floor | embedding attack − floor | "
        "leakage cmPSNR | leakage cm lum-SSIM | leakage NMI | gradient share cmPSNR | private leakage cmPSNR |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = _rows(results)
    for e in rows:
        v, a = e["victim"], e["sma"]
        lines.append(f"| {e['room']} | {e['defense']} | {_fmt(v.get('psnr'), 2)} | {_fmt(a.get('attack_psnr'), 2)} | "
                     f"{_fmt(a.get('attack_leakage_cmpsnr'), 2, True)} | "
                     f"{_fmt(a.get('embedding_attack_leakage_cmpsnr'), 2, True)} | "
                     f"{_fmt(a.get('leakage_cmpsnr'), 2, True)} | {_fmt(a.get('leakage_cm_lum_ssim'), 3, True)} | "
                     f"{_fmt(a.get('leakage_nmi'), 3, True)} | {_fmt(a.get('gradient_share_cmpsnr'), 2, True)} | "
                     f"{_fmt(a.get('leakage_private_cmpsnr'), 2, True)} |")
    lines += [
        "",
        "SSMA (the same attacker after one leaked photo) and the dummy images (the attacker's copy of the "
        "training photos); margins over the floor:",
        "",
        "| room | defense | SSMA PSNR | SSMA attacker − floor cmPSNR | SSMA attacker − floor cm lum-SSIM | "
        "SSMA attacker − floor private cmPSNR | dummy PSNR | dummy − floor cmPSNR | dummy − floor cm lum-SSIM | "
        "dummy − floor private cmPSNR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        b, d = e["ssma"], e["dummies"]
        lines.append(f"| {e['room']} | {e['defense']} | {_fmt(b.get('attack_psnr'), 2)} | "
                     f"{_fmt(b.get('attack_leakage_cmpsnr'), 2, True)} | "
                     f"{_fmt(b.get('attack_leakage_cm_lum_ssim'), 3, True)} | "
                     f"{_fmt(b.get('attack_leakage_private_cmpsnr'), 2, True)} | {_fmt(d.get('dummy_attack_psnr'), 2)} | "
                     f"{_fmt(d.get('dummy_leakage_cmpsnr'), 2, True)} | {_fmt(d.get('dummy_leakage_cm_lum_ssim'), 3, True)} | "
                     f"{_fmt(d.get('dummy_leakage_private_cmpsnr'), 2, True)} |")
    return "\n".join(lines) + "\n"


def seeds_text(results: dict) -> str:
    """How many seeds each (room, defense) has, e.g. ``2 (42, 43) for all 18`` or per group."""
    groups: Dict[str, List[int]] = {}
    for c in results["cells"].values():
        groups.setdefault(f"{c['room']} / {c['defense']}", []).append(int(c["seed"]))
    by_seeds: Dict[str, List[str]] = {}
    for name, seeds in groups.items():
        by_seeds.setdefault(f"{len(seeds)} ({', '.join(map(str, sorted(seeds)))})", []).append(name)
    if len(by_seeds) == 1:
        return f"{next(iter(by_seeds))} for all {len(groups)}"
    return "; ".join(f"{k} for {', '.join(v)}" for k, v in sorted(by_seeds.items(), key=lambda kv: -len(kv[1])))


def provenance_text(prov: dict) -> str:
    """The commit and whether the tree was clean, and if not whether ``--allow-dirty`` was given."""
    text = f"commit {str(prov.get('git_commit', 'unknown'))[:10]}"
    if prov.get("git_dirty"):
        files = len(prov.get("git_dirty_files") or [])
        text += f" with {files} modified files" if files else " with modified files"
        text += (" (`--allow-dirty`)" if prov.get("allow_dirty") else
                 " (before the benchmarks refused a dirty tree: that code cannot be recovered)"
                 if "allow_dirty" not in prov else "")
    elif prov.get("git_dirty") is None:
        text += " (whether the tree was clean is unknown)"
    return text


def privacy_markdown(results: dict) -> str:
    """``results.md`` of a privacy benchmark."""
    return privacy_tables(results)


def readme_block(results: dict) -> str:
    return f"{BEGIN}\n{privacy_tables(results)}{END}"


def update_readme(readme: Path, results: dict) -> bool:
    """Replace the README's results block with the one the results give; True if the file changed."""
    return replace_block(readme, BEGIN, END, readme_block(results))


def readme_matches(readme: Path, results: dict) -> bool:
    """Whether the README's results block is exactly what the results give."""
    return block_matches(readme, BEGIN, END, readme_block(results))


def _block(begin: str, end: str) -> "re.Pattern[str]":
    return re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)


def replace_block(readme: Path, begin: str, end: str, generated: str) -> bool:
    """Replace the first ``begin ... end`` block of a file by ``generated`` (which holds both markers)."""
    text = readme.read_text()
    if not _block(begin, end).search(text):
        raise SystemExit(f"{readme} has no {begin} ... {end} block")
    new = _block(begin, end).sub(lambda _: generated, text, count=1)
    if new != text:
        readme.write_text(new)
    return new != text


def block_matches(readme: Path, begin: str, end: str, generated: str) -> bool:
    found = _block(begin, end).search(readme.read_text())
    return bool(found) and found.group(0) == generated


def load_json(path: Path, flag: str, needs: str, what: str) -> Dict:
    """A results file as a dict, or one line naming ``flag``: missing, unreadable, not JSON, or JSON without
    the ``needs`` entry (another tool's file)."""
    import json

    from s2nerf_ns.errors import InputError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{flag} {path}: no such file (give the {what} a benchmark wrote)") from None
    except IsADirectoryError:
        raise InputError(f"{flag} {path}: a folder; give the {what} inside it") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{flag} {path}: cannot read it ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{flag} {path}: not JSON ({e.msg}, line {e.lineno}); give the {what} a benchmark "
                         "wrote") from None
    if not isinstance(data, dict) or not isinstance(data.get(needs), (dict, list)):
        raise InputError(f"{flag} {path}: JSON but not a {what} (it has no {needs!r} entry)")
    return data


def load(path: Path, flag: str = "--results") -> Dict:
    """A privacy benchmark's ``results.json`` (one line naming ``flag`` when it is not one)."""
    results = load_json(path, flag, "cells", "privacy benchmark's results.json")
    for key, cell in results["cells"].items():
        missing = [k for k in ("room", "defense", "seed") if not isinstance(cell, dict) or k not in cell]
        if missing:
            from s2nerf_ns.errors import InputError

            raise InputError(f"{flag} {path}: cell {key!r} has no {', '.join(missing)}: not a privacy "
                             "benchmark's results.json")
    return results
