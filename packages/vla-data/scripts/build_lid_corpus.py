"""Build a labelled language-ID corpus from gettext message catalogs (``.mo`` files), offline.

Every translated UI string in a catalog under ``<root>/.../<locale>/LC_MESSAGES/<domain>.mo`` is
a real sentence (or phrase) in that locale's language; the English ``msgid`` strings give ``en``.
Strings are cleaned of printf/brace placeholders, markup, accelerators, URLs, paths and
command-line options, deduplicated (case-, space- and punctuation-insensitively), dropped when
the same text occurs under two labels, when a translation equals an English ``msgid``, or when
its script disagrees with the language's main script. Each language is then shuffled with a
fixed seed, capped, and split by message into train / held-out test (so no text is in both).

Locale -> label: the ISO 639 code of the locale (``pt_BR`` -> ``pt``, ``fil`` -> ``tl``,
``kmr`` -> ``ku``); ``zh_CN``/``zh_SG`` (Simplified) and ``zh_TW``/``zh_HK``/``zh_MO``
(Traditional) all -> ``cmn``: the script is not the language, and a Simplified/Traditional split
learnt from UI strings misread everyday Simplified sentences as Traditional. zh_HK catalogs are
Standard Written Chinese, not written Cantonese: the script counts zh_HK strings with characters only written
Cantonese uses (嘅 咗 喺 哋 唔 冇 啲 嚟 佢 乜 嘢 咁 咩 嗰; not 係, which formal Chinese has too, as in
關係) and records the count (0 of ~36k on Debian 12). English locales (``en_GB`` ...),
``@`` variants (``sr@latin``, ``ca@valencia`` ...) and locales written in another script than
their language's usual one (``pa_PK``, ``az_IR``) are skipped.

Inputs: ``--mo-root`` folders (default ``/usr/share/locale``) and ``--deb`` folders of Debian
packages, each extracted with ``dpkg-deb -x`` into a temporary folder. To fetch the packages
used for the shipped model (online, once)::

    apt-get update && mkdir -p /tmp/lid/debs && cd /tmp/lid/debs && apt-get download <packages>

where ``<packages>`` is ``sources.debs`` in ``corpus.json`` / the model card.

Writes ``train.txt`` and ``test.txt`` (fastText lines) and ``corpus.json`` (counts, sources).
Deterministic: same inputs and seed give the same files.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import html
import json
import math
import random
import re
import shlex
import struct
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from vla_data.classify.data import format_line, normalize_text

EXCLUDED_DOMAINS = ("iso_*", "*locations*")  # proper names (countries, cities, languages)
CHINESE = dict.fromkeys("zh_CN zh_SG zh_Hans zh_TW zh_HK zh_MO zh_Hant".split(), "cmn")
ALIASES = {"fil": "tl", "kmr": "ku", "no": "nb", "iw": "he", "in": "id", "ji": "yi"}
OTHER_SCRIPT_LOCALES = {"pa_PK", "az_IR", "mo"}  # Shahmukhi, Perso-Arabic, Moldovan Cyrillic
CANTONESE_CHARS = re.compile("[嘅咗喺哋唔冇啲嚟佢乜嘢咁咩嗰]")

_MARKUP = re.compile(r"</?[A-Za-z][^<>]{0,200}>")
_PRINTF = re.compile(
    r"%(?:\(\w+\)|\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
    r"(?:hh|h|ll|l|L|q|j|z|Z|t|I64|I32|I)?[diouxXeEfFgGaAcCsSpnm%]"
)
_BRACES = re.compile(r"\{[^{}\s]{0,40}\}|\$\{?\w+\}?")
_URL = re.compile(r"\b(?:https?|ftp|file)://\S+|\bwww\.\S+|\S+@\S+\.\w+")
_PATH = re.compile(r"(?<!\S)[~.]?/\S*")
_OPTION = re.compile(r"(?<![\w-])--?[A-Za-z0-9][\w-]*(?:=\S*)?")
_CJK_ACCEL = re.compile(r"\s*[(（][_&][^\s)）][)）]")
_ACCEL = re.compile(r"[_&](?=\w)")
_IDENTIFIER = re.compile(r"[:./=\\]\w")


def read_mo(path: Path) -> list[tuple[str, str]]:
    """``(msgid, msgstr)`` pairs of a ``.mo`` file (plural forms and contexts flattened)."""
    data = path.read_bytes()
    if len(data) < 20:
        raise ValueError("too short")
    magic = struct.unpack("<I", data[:4])[0]
    order = {0x950412DE: "<", 0xDE120495: ">"}.get(magic)
    if order is None:
        raise ValueError("bad magic number")
    _, n, orig, trans = struct.unpack(order + "4I", data[4:20])
    raw = []
    for i in range(n):
        olen, ooff = struct.unpack_from(order + "2I", data, orig + 8 * i)
        tlen, toff = struct.unpack_from(order + "2I", data, trans + 8 * i)
        raw.append((data[ooff : ooff + olen], data[toff : toff + tlen]))
    charset = "utf-8"
    for msgid, msgstr in raw:
        if msgid == b"" and (m := re.search(rb"charset=([\w-]+)", msgstr)):
            charset = m.group(1).decode("ascii")
    pairs = []
    for msgid, msgstr in raw:
        if not msgid or not msgstr:
            continue
        try:
            ids = msgid.decode(charset).split("\x04")[-1].split("\x00")
            strs = msgstr.decode(charset).split("\x00")
        except (UnicodeDecodeError, LookupError):
            continue
        pairs += [(ids[min(i, len(ids) - 1)], s) for i, s in enumerate(strs) if s]
    return pairs


@functools.lru_cache(maxsize=1 << 20)
def clean(text: str) -> str:
    """Drop placeholders, markup, accelerators, URLs, paths and options; one line."""
    text = _MARKUP.sub(" ", text)
    text = html.unescape(text)
    for pattern in (_PRINTF, _BRACES, _URL, _PATH, _OPTION, _CJK_ACCEL):
        text = pattern.sub(" ", text)
    return normalize_text(_ACCEL.sub("", text))


def is_latin(ch: str) -> bool:
    code = ord(ch)
    return code < 0x250 or 0x1E00 <= code < 0x1F00


def latin_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(map(is_latin, letters)) / len(letters) if letters else 0.0


def usable(text: str) -> bool:
    """At least two letters, mostly letters, and not a lone identifier like ``default:LTR``."""
    letters = sum(c.isalpha() for c in text)
    nonspace = sum(not c.isspace() for c in text)
    if letters < 2 or letters < 0.5 * nonspace or len(text) > 2000:
        return False
    return " " in text or not _IDENTIFIER.search(text)


def dedupe_key(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def locale_label(locale: str) -> str | None:
    """The label of a locale folder name, or None to skip it."""
    if locale in CHINESE:
        return CHINESE[locale]
    base = locale.split("_")[0].split("@")[0].split(".")[0]
    if "@" in locale or base in ("en", "zh") or locale in OTHER_SCRIPT_LOCALES:
        return None
    if not re.fullmatch(r"[a-z]{2,3}", base):
        return None
    return ALIASES.get(base, base)


def extract_debs(folders: list[Path], dest: Path) -> list[str]:
    """Extract every ``.deb`` in ``folders`` into ``dest``; return ``package=version`` names."""
    names = []
    for deb in sorted(p for folder in folders for p in folder.glob("*.deb")):
        fields = subprocess.run(
            ["dpkg-deb", "-f", str(deb), "Package", "Version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        names.append("=".join(f.split(": ", 1)[1] for f in fields[:2]))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return names


def catalogs(roots: list[Path]) -> list[tuple[Path, str, str]]:
    """``(path, locale, domain)`` of every ``.mo`` under ``roots``, sorted."""
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.mo")):
            if path.parent.name == "LC_MESSAGES" and path.is_file():
                found.append((path, path.parent.parent.name, path.stem))
    return found


def inputs_digest(found: list[tuple[Path, str, str]], roots: list[Path]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in found:
        root = next(r for r in roots if path.is_relative_to(r))
        digest.update(f"{path.relative_to(root)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build(args: argparse.Namespace, roots: list[Path], debs: list[str]) -> dict:
    found = catalogs(roots)
    print(f"{len(found)} catalogs under {len(roots)} roots", file=sys.stderr)
    texts: dict[str, dict[str, str]] = defaultdict(dict)  # label -> key -> first text
    domain_of: dict[tuple[str, str], str] = {}
    label_locales: dict[str, Counter[str]] = defaultdict(Counter)
    skipped_locales: Counter[str] = Counter()
    excluded_domains: Counter[str] = Counter()
    bad_files = []
    untranslated = Counter()
    cantonese = {"zh_HK_strings": 0, "with_cantonese_chars": 0}
    english_keys = set()
    for path, locale, domain in found:
        if any(fnmatch.fnmatch(domain, pattern) for pattern in EXCLUDED_DOMAINS):
            excluded_domains[domain] += 1
            continue
        try:
            pairs = read_mo(path)
        except (OSError, ValueError, struct.error) as e:
            bad_files.append(f"{path}: {e}")
            continue
        label = locale_label(locale)
        if label is None:
            skipped_locales[locale] += 1
        else:
            label_locales[label][locale] += 1
        for msgid, msgstr in pairs:
            source = clean(msgid)
            if usable(source):
                key = dedupe_key(source)
                english_keys.add(key)
                if key not in texts["en"]:
                    texts["en"][key] = source
                    domain_of["en", key] = domain
            if label is None:
                continue
            text = clean(msgstr)
            if text == source:
                untranslated[label] += 1
                continue
            if not usable(text):
                continue
            if locale == "zh_HK":
                cantonese["zh_HK_strings"] += 1
                cantonese["with_cantonese_chars"] += bool(CANTONESE_CHARS.search(text))
            key = dedupe_key(text)
            if key not in texts[label]:
                texts[label][key] = text
                domain_of[label, key] = domain
    label_locales["en"]["msgid of every catalog"] = len(found) - sum(excluded_domains.values())

    owners: dict[str, set[str]] = defaultdict(set)
    for label, by_key in texts.items():
        for key in by_key:
            owners[key].add(label)
    stats, train, test = {}, [], []
    for label in sorted(texts):
        by_key = texts[label]
        letters = "".join(by_key.values())
        latin_main = latin_share(letters) >= 0.5
        drop = Counter()
        kept = []
        for key in sorted(by_key):
            text = by_key[key]
            if len(owners[key]) > 1:
                drop["same text under another label"] += 1
            elif label != "en" and key in english_keys:
                drop["equals an English msgid"] += 1
            elif (latin_share(text) >= 0.5) != latin_main:
                drop["other script"] += 1
            else:
                kept.append(key)
        random.Random(f"{args.seed}:{label}").shuffle(kept)
        capped = kept[: args.max_per_language]
        n_test = math.ceil(args.holdout * len(capped))
        entry = {
            "locales": dict(sorted(label_locales[label].items())),
            "unique": len(by_key),
            "dropped": dict(sorted(drop.items())),
            "untranslated": untranslated[label],
            "usable": len(kept),
            "train": len(capped) - n_test,
            "test": n_test,
            "domains": dict(Counter(domain_of[label, k] for k in capped).most_common(8)),
        }
        if len(kept) < args.min_messages:
            entry["excluded"] = f"fewer than {args.min_messages} usable messages"
        else:
            test += [(by_key[k], label) for k in capped[:n_test]]
            train += [(by_key[k], label) for k in capped[n_test:]]
        stats[label] = entry
    random.Random(args.seed).shuffle(train)
    random.Random(args.seed + 1).shuffle(test)
    for name, rows in (("train.txt", train), ("test.txt", test)):
        lines = "".join(format_line(text, label) + "\n" for text, label in rows)
        (args.out / name).write_text(lines, encoding="utf-8")
    included = [label for label, entry in stats.items() if "excluded" not in entry]
    return {
        "command": shlex.join(["python", *sys.argv]),
        "languages": included,
        "n_train": len(train),
        "n_test": len(test),
        "seed": args.seed,
        "holdout": args.holdout,
        "max_per_language": args.max_per_language,
        "min_messages": args.min_messages,
        "sources": {
            "mo_roots": [str(r) for r in args.mo_root],
            "debs": debs,
            "catalogs": len(found),
            "unreadable_catalogs": bad_files,
            "excluded_domains": dict(sorted(excluded_domains.items())),
            "skipped_locales": dict(sorted(skipped_locales.items())),
            "inputs_sha256": inputs_digest(found, roots),
        },
        "zh_HK_check": cantonese,
        "per_language": stats,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mo-root", type=Path, action="append", help="folder with .mo files")
    parser.add_argument("--deb", type=Path, action="append", default=[], help="folder of .debs")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.1, help="test share per language")
    parser.add_argument("--max-per-language", type=int, default=10_000)
    parser.add_argument("--min-messages", type=int, default=500)
    args = parser.parse_args(argv)
    args.mo_root = args.mo_root or [Path("/usr/share/locale")]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lid-debs-") as tmp:
        debs = extract_debs(args.deb, Path(tmp))
        roots = [r.resolve() for r in args.mo_root] + ([Path(tmp)] if debs else [])
        summary = build(args, roots, debs)
    (args.out / "corpus.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    for label in summary["languages"]:
        entry = summary["per_language"][label]
        print(f"{label:9} train {entry['train']:6}  test {entry['test']:5}", file=sys.stderr)
    print(
        f"{len(summary['languages'])} languages, {summary['n_train']} train / "
        f"{summary['n_test']} test lines -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
