#!/usr/bin/env python3
"""Turn one of credbroker's Markdown manuals (docs/credbroker.1.md, credbrokerd.8.md,
credbroker.conf.md) into a man page in roff, at build time (meson.build).

The Markdown stays the long form that people read on the web and in the tree; the man page is
generated from it, so the two cannot drift apart. Only the Markdown those files use is
understood: '#' titles, '##'/'###' sections, paragraphs, fenced code, '*'/'-' and '1.' lists
(with indented continuation lines), pipe tables (rendered as tagged paragraphs: the last
column is the text, the others its tag), `code`, **bold**, *emphasis* and [links](target).

    md2man.py --name NAME --section N --description TEXT [--date YYYY-MM-DD] IN.md OUT
"""
import argparse
import re
import sys

SPECIAL = {
    "\u2013": "\\(en",
    "\u2014": "\\(em",
    "\u2026": "\\&...",
    "\u2018": "\\(oq",
    "\u2019": "\\(cq",
    "\u201c": "\\(lq",
    "\u201d": "\\(rq",
    "\u2264": "\\(<=",
    "\u2265": "\\(>=",
    "\u2192": "\\(->",
    "\u00d7": "\\(mu",
    "\u00a7": "\\(sc",
    "\u00b0": "\\(de",
}


def escape_text(s, code=False):
    """Plain text to roff: backslashes and non-ASCII escaped; '-' kept as an ASCII minus in
    code (options and paths must copy and paste)."""
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\e")
        elif ch == "-" and code:
            out.append("\\-")
        elif ch in SPECIAL:
            out.append(SPECIAL[ch])
        elif ord(ch) > 0x7E or (ord(ch) < 0x20 and ch != "\t"):
            out.append("\\[u%04X]" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|\[([^\]]+)\]\(([^)]+)\)")


def inline(s):
    """Markdown inline markup to roff fonts."""
    out = []
    pos = 0
    for m in INLINE.finditer(s):
        out.append(escape_text(s[pos:m.start()]))
        if m.group(1) is not None:
            out.append("\\fB" + escape_text(m.group(1), code=True) + "\\fR")
        elif m.group(2) is not None:
            out.append("\\fB" + inline(m.group(2)) + "\\fR")
        elif m.group(3) is not None:
            out.append("\\fI" + inline(m.group(3)) + "\\fR")
        else:
            # A link: its text; a target outside the manuals is named in parentheses.
            text, target = m.group(4), m.group(5)
            out.append(inline(text))
            if target.startswith("http"):
                out.append(" (" + escape_text(target) + ")")
        pos = m.end()
    out.append(escape_text(s[pos:]))
    return "".join(out)


def text_line(s):
    """One line of running text: a line may not start with a control character."""
    s = s.strip()
    if s.startswith((".", "'")):
        s = "\\&" + s
    return s


def split_row(line):
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


LIST_ITEM = re.compile(r"^(\s*)([*-]|\d+\.)\s+(.*)$")


def convert(lines, name, section, description, date):
    out = [
        '.\\" Generated from Markdown by docs/md2man.py; edit the Markdown, not this file.',
        '.TH "%s" "%s" "%s" "credbroker" "credbroker"' % (name.upper(), section, date),
        ".SH NAME",
        "%s \\- %s" % (escape_text(name, code=True), escape_text(description)),
    ]
    i = 0
    n = len(lines)
    in_list = False
    title_seen = False
    need_synopsis = True

    def end_list():
        nonlocal in_list
        if in_list:
            out.append(".PP")
            in_list = False

    while i < n:
        line = lines[i].rstrip("\n")
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            block = []
            i += 1
            while i < n and not lines[i].startswith("```"):
                block.append(lines[i].rstrip("\n"))
                i += 1
            i += 1
            if need_synopsis and title_seen and len(out) == 4:
                out.append(".SH SYNOPSIS")
            need_synopsis = False
            if in_list:
                out.append(".RS 2")
            else:
                out.append(".PP")
            out.append(".RS 4")
            out.append(".nf")
            for b in block:
                t = escape_text(b, code=True)
                out.append("\\&" + t if t.startswith((".", "'")) else t)
            out.append(".fi")
            out.append(".RE")
            if in_list:
                out.append(".RE")
            continue
        m = re.match(r"^(#{1,3})\s+(.*)$", line)
        if m:
            end_list()
            level, title = len(m.group(1)), m.group(2).strip()
            i += 1
            if level == 1:
                title_seen = True
                continue
            if need_synopsis and len(out) == 4:
                out.append(".SH DESCRIPTION")
            need_synopsis = False
            if level == 2:
                out.append(".SH " + '"' + escape_text(re.sub(r"[`*]", "", title).upper()).replace('"', "") + '"')
            else:
                out.append(".SS " + '"' + inline(title).replace('"', "") + '"')
            continue
        if need_synopsis and len(out) == 4:
            out.append(".SH DESCRIPTION")
            need_synopsis = False
        if line.lstrip().startswith("|"):
            end_list()
            rows = []
            while i < n and lines[i].lstrip().startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            if len(rows) >= 2 and all(re.fullmatch(r":?-+:?", c) for c in rows[1] if c):
                header, body = rows[0], rows[2:]
            else:
                header, body = None, rows
            out.append(".PP")
            for row in body:
                tag = "  ".join(inline(c) for c in row[:-1] if c)
                out.append(".TP")
                out.append(text_line(tag) if tag else "\\&")
                out.append(text_line(inline(row[-1])) if row[-1] else "\\&")
            out.append(".PP")
            continue
        m = LIST_ITEM.match(line)
        if m:
            marker = m.group(2)
            para = [m.group(3)]
            i += 1
            while i < n and lines[i].strip() and not LIST_ITEM.match(lines[i]) \
                    and not lines[i].startswith(("```", "#", "|")) and lines[i].startswith(" "):
                para.append(lines[i].strip())
                i += 1
            out.append(".IP %s %d" % ("\\(bu" if marker in "*-" else marker, 3 if marker in "*-" else 4))
            out.append(text_line(inline(" ".join(para))))
            in_list = True
            continue
        # A paragraph: up to a blank line or another block.
        end_list()
        para = [line.strip()]
        i += 1
        while i < n and lines[i].strip() and not lines[i].startswith(("```", "#", "|")) \
                and not LIST_ITEM.match(lines[i]):
            para.append(lines[i].strip())
            i += 1
        out.append(".PP")
        out.append(text_line(inline(" ".join(para))))
    # Drop paragraph breaks that lead into a section title or end the page (mandoc warns).
    cleaned = []
    for line in out:
        if line.startswith((".SH", ".SS", ".PP", ".TP", ".IP")) and cleaned and cleaned[-1] == ".PP":
            cleaned.pop()
        if line == ".PP" and cleaned and cleaned[-1].startswith((".SH", ".SS")):
            continue
        cleaned.append(line)
    while cleaned and cleaned[-1] == ".PP":
        cleaned.pop()
    return "\n".join(cleaned) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--section", required=True)
    ap.add_argument("--description", required=True)
    ap.add_argument("--date", default="2026-12-01")
    ap.add_argument("input")
    ap.add_argument("output")
    args = ap.parse_args()
    with open(args.input, encoding="utf-8") as f:
        lines = f.readlines()
    text = convert(lines, args.name, args.section, args.description, args.date)
    with open(args.output, "w", encoding="ascii") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
