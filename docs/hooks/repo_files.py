"""mkdocs hook: the pages link repository files outside ``docs/`` (plans, results, figures, example configs) by
their relative path, so the same Markdown works on GitHub and on the site.

mkdocs only serves what lies under ``docs/``, and in strict mode a link it cannot resolve fails the build. This
hook keeps one copy of each figure and plan in git (under ``experiments/``, next to the run that wrote it) and
instead, at build time:

- finds every link and image that leaves ``docs/`` (in the pages, and again in each Markdown file it brings in);
- copies the target into the site under ``repo/<path in the repository>`` (a Markdown file becomes a page, so a
  PLAN.md is rendered; a folder gets a generated page listing its files) and points the link there;
- fails the build, naming the page and the link, when the target does not exist in the repository: strict mode
  would not see such a link once it is rewritten, so the hook keeps the check.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

PREFIX = "repo"
_LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_FENCE = re.compile(r"^(```|~~~)")
_SKIP_DIRS = {"__pycache__", ".git", "node_modules"}

# repository path (posix, relative) -> "file" | "dir"; filled in on_files, read in on_page_markdown
_targets: dict[str, str] = {}


def _outside_code(markdown: str):
    """Yield ``(is_code, chunk)`` for the Markdown split at fenced code blocks, whose text is not links."""
    chunk, in_code = [], False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line.lstrip()):
            if chunk:
                yield in_code, "".join(chunk)
            chunk, in_code = [line], not in_code
            if not in_code:  # the closing fence belongs to the code block
                yield True, "".join(chunk)
                chunk = []
            continue
        chunk.append(line)
    if chunk:
        yield in_code, "".join(chunk)


def _links(markdown: str):
    for is_code, chunk in _outside_code(markdown):
        if not is_code:
            for m in _LINK.finditer(chunk):
                yield m.group(2)


def _repo_target(repo: Path, src_repo_path: str, url: str) -> str | None:
    """The repository path a link points to when it leaves ``docs/`` (``None`` for URLs, anchors, docs pages)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", url) or url.startswith(("#", "/")):
        return None
    path = url.split("#", 1)[0].split("?", 1)[0]
    if not path:
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(src_repo_path), path))
    if target.startswith("../"):
        raise PluginError(f"{src_repo_path}: the link {url!r} leaves the repository")
    if target == "docs" or target.startswith("docs/"):
        return None  # a docs page: mkdocs checks it
    return target


def _walk(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".") and not d.endswith(
            ".egg-info"))
        out += [Path(root) / f for f in sorted(files) if not f.endswith(".pyc")]
    return out


def on_files(files, config):
    repo = Path(config["config_file_path"]).resolve().parent
    docs = Path(config["docs_dir"]).resolve()
    _targets.clear()
    # (repository path of a Markdown source, its text): the docs pages first, then what they bring in
    queue = [(f"docs/{f.src_uri}", Path(f.abs_src_path).read_text(encoding="utf-8"))
             for f in files.documentation_pages() if f.abs_src_path and Path(f.abs_src_path).is_relative_to(docs)]
    while queue:
        src, text = queue.pop()
        for url in _links(text):
            target = _repo_target(repo, src, url)
            if target is None or target in _targets:
                continue
            abs_target = repo / target
            if abs_target.is_dir():
                _targets[target] = "dir"
                children = [p.relative_to(repo).as_posix() for p in _walk(abs_target)]
                listing = f"# `{target}/`\n\n" + "\n".join(
                    f"- [`{posixpath.relpath(c, target)}`]({posixpath.relpath(c, target)})" for c in children)
                files.append(File.generated(config, f"{PREFIX}/{target}/index.md", content=listing + "\n"))
                queue.append((f"{target}/index.md", listing))
            elif abs_target.is_file():
                _targets[target] = "file"
                files.append(File.generated(config, f"{PREFIX}/{target}", abs_src_path=str(abs_target)))
                if target.endswith(".md"):
                    queue.append((target, abs_target.read_text(encoding="utf-8")))
            else:
                raise PluginError(f"{src}: the link {url!r} points to {target}, which is not in the repository")
    return files


def on_page_markdown(markdown, page, config, files):
    src_uri = page.file.src_uri
    # a page this hook brought in sits at repo/<its path>: its links to repository files point at the copies once
    # a folder link names the folder's listing page; its links into docs/ go to the docs page itself
    brought_in = page.file.generated_by is not None and src_uri.startswith(PREFIX + "/")
    src = src_uri[len(PREFIX) + 1:] if brought_in else f"docs/{src_uri}"
    repo = Path(config["config_file_path"]).resolve().parent

    def rewrite(m: re.Match) -> str:
        url = m.group(2)
        path, anchor = url.split("#", 1)[0], url[len(url.split("#", 1)[0]):]
        target = _repo_target(repo, src, url)
        if target is not None:
            site_path = f"{PREFIX}/{target}" + ("/index.md" if _targets.get(target) == "dir" else "")
        elif brought_in and path and not re.match(r"^[a-z][a-z0-9+.-]*:", url):
            in_docs = posixpath.normpath(posixpath.join(posixpath.dirname(src), path))
            if not in_docs.startswith("docs/"):
                return m.group(0)
            site_path = in_docs[len("docs/"):]
        else:
            return m.group(0)
        rel = posixpath.relpath(site_path, posixpath.dirname(src_uri) or ".")
        return f"{m.group(1)}{rel}{anchor}{m.group(3)}"

    return "".join(chunk if is_code else _LINK.sub(rewrite, chunk) for is_code, chunk in _outside_code(markdown))
