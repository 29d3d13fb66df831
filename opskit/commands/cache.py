"""``opskit cache``: page-exact page-cache maps, warming one host from another, compare, evict."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from opskit import settings
from opskit.cache import ranges as rg
from opskit.cache import tools, warm
from opskit.cache.pagemap import PageMap, compare
from opskit.commands.mutating import Change, mutating
from opskit.commands.options import AppContext, pass_app, shared_options
from opskit.errors import EXIT_OK, UsageError
from opskit.inventory import Host
from opskit.runner import hostpool
from opskit.units import human_bytes

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?$", re.I)


def parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    m = _SIZE.match(text.strip())
    if not m:
        raise UsageError(f"not a size: {text!r}", hint="e.g. 512M, 2G, 1048576")
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def _one(app: AppContext, spec: str) -> Host:
    hosts = app.inventory().select(spec)
    if len(hosts) != 1:
        raise UsageError(f"{spec!r} names {len(hosts)} hosts, not one",
                         hint="give one inventory host name")
    settings.of(hosts[0], "cache")  # a bad cache: setting is refused before any connection
    return hosts[0]


def _path_map(path: str, mapping: str | None) -> tuple[str, str]:
    if not mapping:
        return path, path
    src, sep, dst = mapping.partition("=")
    if not sep or not src.startswith("/") or not dst.startswith("/"):
        raise UsageError(f"--path-map {mapping!r} is not SRC_DIR=DST_DIR",
                         hint="e.g. --path-map /data/pg=/data2/pg")
    return src, dst


@click.group("cache", epilog="""\b
Examples:
  opskit cache map db2 --path /data/cache -o db2.json
  opskit cache warm --from db2 --to db3 --path /data/cache --yes
  opskit cache compare db2 db3 --path /data/cache
""")
def command() -> None:
    """Page-cache residency maps (mincore), exact warming between hosts, compare, evict."""


@command.command("map", epilog="""\b
Examples:
  opskit cache map db2 --path /data/pg
  opskit cache map db2 --path /data/pg -o db2-map.json --json | jq .totals
""")
@click.argument("host")
@click.option("--path", "path", required=True, help="Directory to map. Example: --path /data")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the map (JSON) to this file. Example: -o map.json")
@shared_options
@pass_app
def map_cmd(app: AppContext, host: str, path: str, output: str | None) -> int:
    """The page-cache residency of every file under PATH on HOST: per file its size and
    resident page ranges (run-length), and totals; vmtouch's summary as a cross-check."""
    h = _one(app, host)
    with hostpool.pool(app.run_options()) as pool:
        pm, check = tools.map_dir(pool.get(h), path)
    doc = {**pm.to_doc(), "vmtouch": check}
    if output:
        Path(output).write_text(json.dumps(doc) + "\n")
    if app.env.json:
        app.env.emit_json(doc)
        return EXIT_OK
    t = pm.totals()
    rows = sorted(((rel, human_bytes(f["size"]), rg.count(f["resident"]), f["pages"],
                    f"{100 * rg.count(f['resident']) / max(1, f['pages']):.0f}%",
                    len(f["resident"])) for rel, f in pm.files.items()),
                  key=lambda r: -int(r[2]))[:20]
    app.env.table(("file", "size", "resident pages", "pages", "resident", "ranges"), rows,
                  title=f"{h.name}:{path} (top 20 by resident pages)")
    app.env.line(f"{t['files']} files, {t['resident_pages']}/{t['pages']} pages resident "
                 f"({human_bytes(t['resident_bytes'])} of {human_bytes(t['bytes'])})"
                 + (f"; {check}" if check else "")
                 + (f"; {len(pm.skipped)} skipped" if pm.skipped else "")
                 + (f"; written to {output}" if output else ""))
    return EXIT_OK


@command.command("warm", epilog="""\b
Examples:
  opskit cache warm --from db2 --to db3 --path /data/pg --dry-run
  opskit cache warm --from db2 --to db3 --path /data/pg --max-bytes 2G --yes
  opskit cache warm --map db2.json --to db3 --path /data/pg --path-map /data/pg=/data2/pg --yes
""")
@click.option("--from", "src", help="Host whose cache to copy. Example: --from db2")
@click.option("--to", "dst", required=True, help="Host to warm. Example: --to db3")
@click.option("--path", "path", required=True, help="Directory on the source. Example: "
              "--path /data/pg")
@click.option("--path-map", help="SRC_DIR=DST_DIR when the destination keeps the files "
              "elsewhere. Example: --path-map /data/pg=/data2/pg")
@click.option("--map", "map_file", type=click.Path(exists=True, dir_okay=False),
              help="Use a saved source map (from `cache map -o`) instead of mapping --from "
              "now. Example: --map db2.json")
@click.option("--max-bytes", help="Read at most this much (hottest files first). "
              "Example: --max-bytes 4G")
@click.option("--rate", help="Read at most this many bytes per second. Example: --rate 100M")
@mutating("cache warm")
@shared_options
def warm_cmd(app: AppContext, change: Change, src: str | None, dst: str, path: str,
             path_map: str | None, map_file: str | None, max_bytes: str | None,
             rate: str | None) -> int:
    """Make DST's page cache match SRC's: read on DST only the pages resident on SRC and not
    on DST, hottest files first, at idle I/O priority; then measure the match."""
    if not src and not map_file:
        raise UsageError("give --from HOST or --map FILE", hint="the source's residency")
    limit, bps = parse_size(max_bytes), parse_size(rate)
    src_root, dst_root = _path_map(path, path_map)
    to = _one(app, dst)
    source = None if map_file else _one(app, src or "")
    saved = json.loads(Path(map_file).read_text()) if map_file else None
    with hostpool.pool(app.run_options()) as pool:
        prep = warm.prepare(pool, to, dst_root, source_host=source, src_root=src_root,
                            saved_map=saved, limit=limit)
        if change.dry_run:
            doc = warm.report(prep, None, None, dry_run=True)
            return change.planned(doc, lambda: _show_warm(app, doc, prep.source, prep.before),
                                  [to.name])
        change.begin(f"Read {human_bytes(prep.summary['to_read_bytes'])} on {to.name}?",
                     targets=[to.name], plan=prep.summary)
        result, after = _warm(app, pool, to, dst_root, prep, bps)
    doc = warm.report(prep, after, result, dry_run=False)
    change.record({to.name: {"status": "ok", "exit_status": None, "error": None}},
                  exit_code=EXIT_OK, details=doc)
    if app.env.json:
        app.env.emit_json(doc)
    else:
        _show_warm(app, doc, prep.source, prep.before)
    return EXIT_OK


def _warm(app: AppContext, pool: hostpool.HostPool, to: Host, root: str, prep: warm.Prepared,
          bps: int | None) -> tuple[dict[str, Any], PageMap]:
    """The warm itself, with a byte progress bar on a terminal."""
    env = app.env
    if env.stdout_isatty and not env.json:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TransferSpeedColumn(), console=env.out) as bar:
            task = bar.add_task(f"warming {to.name}", total=prep.summary["to_read_bytes"])
            result, after = warm.apply(pool, to, root, prep, rate=bps,
                                       progress=lambda n: bar.update(task, completed=n))
            bar.update(task, completed=result["read_bytes"])
            return result, after
    return warm.apply(pool, to, root, prep, rate=bps)


def _show_warm(app: AppContext, doc: dict[str, Any], smap: PageMap, before: PageMap) -> None:
    env, name = app.env, "cache warm"
    summary, result, dry = doc["plan"], doc["result"], doc["dry_run"]
    rows = [("pages wanted (resident on source)", summary["wanted_pages"]),
            ("already resident on target", summary["already_pages"]),
            ("to read" if dry else "read", summary["to_read_pages"] if dry
             else result["read_pages"] if result else 0)]
    if "after" in doc:
        rows += [("match (source pages now on target)", f"{doc['after']['match_percent']}%"),
                 ("Jaccard of resident pages", doc["after"]["jaccard"])]
    if summary["capped_by_max_bytes"]:
        rows.append(("capped by --max-bytes", "yes"))
    if summary["missing_files"]:
        rows.append(("files missing on target", len(summary["missing_files"])))
    env.table(("", "value"), rows, title=f"{name} {smap.host} -> {before.host}"
              + (" (dry run: nothing read)" if dry else ""))
    gone = sorted({*summary["missing_files"], *((result or {}).get("skipped") or {})})
    if gone:
        env.line(f"WARNING: {len(gone)} file(s) not on {before.host} or gone since the map, "
                 f"skipped (the rest was warmed): {', '.join(gone[:10])}", style="yellow")


@command.command("compare", epilog="""\b
Examples:
  opskit cache compare db2 db3 --path /data/pg
  opskit cache compare db2 db3 --path /data/pg --json | jq .total.jaccard
""")
@click.argument("src")
@click.argument("dst")
@click.option("--path", "path", required=True, help="Directory on SRC. Example: --path /data")
@click.option("--path-map", help="SRC_DIR=DST_DIR. Example: --path-map /data/pg=/data2/pg")
@shared_options
@pass_app
def compare_cmd(app: AppContext, src: str, dst: str, path: str, path_map: str | None) -> int:
    """How alike two hosts' caches are: Jaccard of resident pages, bytes only on one side,
    per file and in total."""
    a_root, b_root = _path_map(path, path_map)
    a_host, b_host = _one(app, src), _one(app, dst)
    with hostpool.pool(app.run_options()) as pool:
        pool.open([a_host, b_host])
        a, _ = tools.map_dir(pool.get(a_host), a_root, cross_check=False)
        b, _ = tools.map_dir(pool.get(b_host), b_root, cross_check=False)
    rows, total = compare(a, b)
    ps = a.page_size
    doc = {"source": a.host, "target": b.host, "page_size": ps,
           "total": {"jaccard": round(total.jaccard, 4), "both_pages": total.both,
                     "only_source_bytes": (total.a_pages - total.both) * ps,
                     "only_target_bytes": (total.b_pages - total.both) * ps},
           "files": [{"path": r.path, "jaccard": round(r.jaccard, 4), "both_pages": r.both,
                      "only_source_bytes": (r.a_pages - r.both) * ps,
                      "only_target_bytes": (r.b_pages - r.both) * ps} for r in rows]}
    if app.env.json:
        app.env.emit_json(doc)
        return EXIT_OK
    top = sorted(rows, key=lambda r: -(r.a_pages + r.b_pages - 2 * r.both))[:20]
    app.env.table(("file", "jaccard", "both", f"only {a.host}", f"only {b.host}"),
                  [(r.path, f"{r.jaccard:.3f}", human_bytes(r.both * ps),
                    human_bytes((r.a_pages - r.both) * ps),
                    human_bytes((r.b_pages - r.both) * ps)) for r in [*top, total]],
                  title=f"{a.host}:{a_root} vs {b.host}:{b_root} (top 20 differences, total)")
    return EXIT_OK


@command.command("evict", epilog="""\b
Examples:
  opskit cache evict db3 --path /data/pg --yes
""")
@click.argument("host")
@click.option("--path", "path", required=True, help="Directory to evict. Example: --path /data")
@mutating("cache evict")
@shared_options
def evict_cmd(app: AppContext, change: Change, host: str, path: str) -> int:
    """Drop PATH's pages from HOST's page cache (vmtouch -e): cold-start drills and tests."""
    h = _one(app, host)
    if change.dry_run:
        return change.planned({"dry_run": True, "host": h.name, "path": path},
                              lambda: app.env.line(f"dry run: would evict {path} from the page "
                                                   f"cache of {h.name}"), [h.name])
    change.begin(f"Evict {path} from the page cache of {h.name}?", targets=[h.name],
                 plan={"path": path})
    with hostpool.pool(app.run_options()) as pool:
        said = tools.evict(pool.get(h), path)
    change.record({h.name: {"status": "ok", "exit_status": 0, "error": None}},
                  exit_code=EXIT_OK)
    if app.env.json:
        app.env.emit_json({"host": h.name, "path": path, "evicted": True})
    else:
        app.env.line(f"{h.name}: {said}")
    return EXIT_OK
