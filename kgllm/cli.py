"""The ``kgllm`` command. The only place that reads environment variables, apart from two library
defaults: the ``openai:`` backend's ``OPENAI_API_KEY`` and WordNet's ``KGLLM_WORDNET``.

Every command takes ``--kb DIR`` (default ``$KGLLM_HOME`` or ``~/.kgllm/default``), ``--store``, the
Neo4j connection options, ``--json`` and ``--debug`` (both also accepted after the command); library
errors print ``ErrorType: message`` and exit 1 (with ``--debug`` or ``$KGLLM_DEBUG`` set, the whole
traceback), command-line usage errors print click's usage message and exit 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from kgllm.config import default_kb_path
from kgllm.exceptions import ConfigError, KGLLMError
from kgllm.formatting import format_answer

__all__ = ["app", "main"]

class _Command(TyperCommand):
    """A command whose usage line names its arguments the conventional way, ``QUESTION`` and ``[PACK]``
    (typer >= 0.2x writes ``{question}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = (param.metavar or param.name or "").upper()
            pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Knowledge-graph-augmented reasoning over domain experts.")


@dataclass
class Options:
    kb: Path
    store: str
    neo4j_uri: str | None
    neo4j_user: str | None
    neo4j_password: str | None
    neo4j_database: str | None
    json: bool

    @property
    def progress(self) -> bool:
        """Progress bars only for a person at a terminal."""
        return not self.json and sys.stderr.isatty()

    def open(self, *, create: bool = True, embedder: str | None = None):  # type: ignore[no-untyped-def]
        import kgllm

        kwargs: dict[str, Any] = {}
        if self.store == "neo4j":
            kwargs = {"neo4j_uri": self.neo4j_uri, "user": self.neo4j_user, "password": self.neo4j_password,
                      "database": self.neo4j_database}
        return kgllm.open(self.kb, store=self.store, create=create, embedder=embedder, **kwargs)


def _emit(opts: Options, data: Any, human: str) -> None:
    if opts.json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(human)


@app.callback()
def _global(
    ctx: typer.Context,
    kb: Path | None = typer.Option(None, "--kb", help="Knowledge-base directory [$KGLLM_HOME or ~/.kgllm/default]."),
    store: str = typer.Option("local", "--store", help="Graph store: local | neo4j."),
    neo4j_uri: str | None = typer.Option(None, "--neo4j-uri", help="Bolt URI [$NEO4J_URI]."),
    neo4j_user: str | None = typer.Option(None, "--neo4j-user", help="[$NEO4J_USER]"),
    neo4j_password: str | None = typer.Option(None, "--neo4j-password", help="[$NEO4J_PASSWORD]"),
    neo4j_database: str | None = typer.Option(None, "--neo4j-database", help="Neo4j database name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output; no progress bars."),
    debug: bool = typer.Option(False, "--debug", help="On an error, print the whole traceback, not one line "
                                                       "[$KGLLM_DEBUG]."),
) -> None:
    # --debug is acted on by main(), which turns errors into output: it is declared here for parsing and --help
    ctx.obj = Options(
        kb=kb or default_kb_path(os.environ.get("KGLLM_HOME")),
        store=store,
        neo4j_uri=neo4j_uri or os.environ.get("NEO4J_URI"),
        neo4j_user=neo4j_user or os.environ.get("NEO4J_USER"),
        neo4j_password=neo4j_password or os.environ.get("NEO4J_PASSWORD"),
        neo4j_database=neo4j_database,
        json=as_json,
    )


@contextmanager
def _undone_if_new(path: Path) -> Iterator[None]:
    """A KB folder that a failing command created is removed (one that was empty is emptied again):
    bad input leaves nothing behind."""
    existed = path.exists()
    was_empty = existed and path.is_dir() and not any(path.iterdir())
    created = _topmost_missing(path)  # `--kb new/a/kb` makes new/ and new/a/ too
    try:
        yield
    except BaseException:
        if created is not None and created.is_dir():
            shutil.rmtree(created)
        elif was_empty:
            for child in path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise


def _topmost_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (``path`` itself at most), or ``None``."""
    missing = None
    absolute = path.absolute()
    for folder in (absolute, *absolute.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


@app.command(cls=_Command)
def load(
    ctx: typer.Context,
    pack: Path | None = typer.Argument(None, metavar="PACK", help="A domain pack directory (with manifest.yaml)."),
    domain: str | None = typer.Option(None, "--domain", help="Domain to load --triples/--documents into."),
    triples: Path | None = typer.Option(None, "--triples", help="Triples file."),
    fmt: str | None = typer.Option(None, "--format", help="tsv | csv | jsonl | pipe | nt | ttl (default: by suffix)."),
    order: str | None = typer.Option(None, "--order", help="Column order for tsv/csv: hrt (default) or rht."),
    documents: list[Path] = typer.Option([], "--documents", help="Text/Markdown files to chunk and index."),
    chunking: str | None = typer.Option(None, "--chunking", help="How --documents are cut: paragraph (default) | "
                                                                 "line (one chunk per line)."),
    description: str | None = typer.Option(None, "--description", help="What the domain knows (used for routing)."),
) -> None:
    """Load a domain pack, or triples/documents into one domain."""
    opts: Options = ctx.obj
    given = [name for name, value in (("--domain", domain), ("--triples", triples), ("--format", fmt),
                                      ("--order", order), ("--documents", documents), ("--chunking", chunking),
                                      ("--description", description)) if value]
    if pack is not None and documents and not pack.is_dir():  # `--documents a.txt b.txt` took b.txt for a pack
        raise ConfigError(f"{str(pack)!r} is not a pack directory; to load several documents, give each with its "
                          f"own --documents (--documents {documents[-1]} --documents {pack})")
    if pack is not None and given:  # the pack's manifest says all of that
        raise ConfigError(f"a pack directory takes none of {', '.join(given)} (its manifest.yaml names the "
                          "domain and files); give either a pack or --domain with --triples/--documents")
    if chunking and not documents:
        raise ConfigError("--chunking says how --documents are cut; give the documents with --documents")
    if description is not None and not description.strip():  # `--description "$UNSET"` wiped the domain's
        raise ConfigError(f"empty --description {description!r}; say what the domain knows (it is used for "
                          "routing), or leave the option out to keep the domain's description")
    for name, value in (("--format", fmt), ("--order", order)):
        if value and not triples:  # documents alone would load with the option silently dropped
            raise ConfigError(f"{name} {value!r} says how the --triples file is read; give it with --triples")
    with _undone_if_new(opts.kb), opts.open() as kb:  # a failed first load leaves no KB behind
        if pack is not None:
            report = kb.load(pack, progress=opts.progress)
        elif domain and (triples or documents):
            report = {}
            if triples and documents:  # a bad document fails before the triples are stored
                from kgllm.loaders import read_documents

                for _ in read_documents(documents, chunking=chunking or "paragraph"):  # type: ignore[arg-type]
                    pass
            if triples:  # with the documents in one step: a failure loads neither
                report = kb.load_triples(domain, triples, format=fmt, order=order, description=description,
                                         documents=documents or (), chunking=chunking, progress=opts.progress)
            elif documents:
                report = kb.load_documents(domain, documents, chunking=chunking, description=description)
        else:
            raise ConfigError("give a pack directory, or --domain with --triples and/or --documents")
        _emit(opts, report, "\n".join([f"{report['domain']}: +{report.get('triples_added', 0)} triples, "
                                        f"+{report.get('chunks_added', 0)} chunks ({report.get('entities', 0)} "
                                        f"entities, {report.get('triples', 0)} triples in all)",
                                        *(f"warning: {w}" for w in report.get("warnings", []))]))


@app.command(cls=_Command)
def stats(ctx: typer.Context) -> None:
    """Domains, counts, indexes and registered backends of the KB."""
    opts: Options = ctx.obj
    with opts.open(create=False) as kb:
        data = kb.stats()
    lines = [f"KB {data['kb']} (store: {data['store']}, embedder: {data['embedder'] or 'default'})"]
    for name, info in data["domains"].items():
        lines.append(f"  {name:<14} {info['entities']:>9} entities {info['triples']:>10} triples "
                     f"{info['relations']:>4} relations {info['chunks']:>6} chunks"
                     + (f"  indexes: {info['indexes']}" if info["indexes"] else ""))
    lines.append(f"registered stores: {', '.join(data['registered']['stores'])}; "
                 f"llms: {', '.join(data['registered']['llms'])}")
    _emit(opts, data, "\n".join(lines))


@app.command(cls=_Command)
def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., metavar="QUESTION", help="The question."),
    domain: str | None = typer.Option(None, "--domain", help="Ask this expert only (skips routing)."),
    llm: str = typer.Option("extractive", "--llm", help="extractive | hf:MODEL_OR_PATH | openai:MODEL@BASE_URL"),
    top_k: int = typer.Option(10, "--top-k", min=1, help="Answers to return."),
    choices: list[str] = typer.Option([], "--choice", help="Answer choices (multiple-choice question)."),
    model: Path | None = typer.Option(None, "--model", help="Trained path-scorer directory (kgllm train metaqa)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="Multiple-choice adapter (kgllm train csqa|obqa)."),
    explore: bool = typer.Option(False, "--explore", help="Let the LLM choose relations hop by hop."),
    no_llm_cache: bool = typer.Option(False, "--no-llm-cache", help="Do not serve LLM requests from the cache."),
) -> None:
    """Answer a question with reasoning paths and provenance."""
    opts: Options = ctx.obj
    if not question.strip():  # nothing to answer: an error, not an empty answer with exit code 0
        raise ConfigError(f"empty question {question!r}; ask, e.g., kgllm ask \"Who directed [Kismet]?\"")
    if adapter is not None and not choices:
        raise ConfigError(f"--adapter {str(adapter)!r} scores answer choices; give them with --choice (at least 2)")
    unused = [name for name, given in (("--llm", llm != "extractive"), ("--model", model is not None),
                                       ("--explore", explore)) if given]
    if choices and unused:  # the choices are ranked by the adapter or by similarity: those would be dropped
        raise ConfigError(f"a multiple-choice question (--choice) is answered by --adapter or by similarity, "
                          f"which take none of {', '.join(unused)}; leave {'it' if len(unused) == 1 else 'them'} out")
    if choices and adapter is not None:  # the adapter carries its own encoder and concept graph: no KB needed
        from kgllm.fusion.choices import answer_choices

        answer = answer_choices(None, question, choices, model_dir=adapter)
    else:
        with opts.open(create=False) as kb:
            answer = kb.ask(question, domain=domain, llm=None if llm == "extractive" else llm, top_k=top_k,
                            choices=choices or None, model=model, adapter=adapter, explore=explore,
                            llm_cache=not no_llm_cache)
    if opts.json:
        typer.echo(answer.to_json(indent=2))
        return
    typer.echo(format_answer(answer))


@app.command("export", cls=_Command)
def export_cmd(ctx: typer.Context, out: Path = typer.Argument(..., metavar="OUT_DIR",
                                                              help="Directory to write the KB dump to.")) -> None:
    """Dump the KB (graph, documents, metadata) to a directory, for moving it between backends."""
    from kgllm.transfer import export_kb

    opts: Options = ctx.obj
    with opts.open(create=False) as kb:
        report = export_kb(kb, out)
    _emit(opts, report, f"exported {len(report['domains'])} domain(s) to {out}: {', '.join(report['domains'])}")


@app.command("import", cls=_Command)
def import_cmd(
    ctx: typer.Context,
    src: Path = typer.Argument(..., metavar="DUMP_DIR", help="A directory written by `kgllm export`."),
    replace: bool = typer.Option(False, "--replace", help="Replace the KB's domains of the same name (default: refuse)."),
) -> None:
    """Load a KB dump into this KB (any backend)."""
    from kgllm.transfer import import_kb

    opts: Options = ctx.obj
    with _undone_if_new(opts.kb), opts.open() as kb:  # import_kb removes the domains of a failed import
        report = import_kb(kb, src, replace=replace)
    _emit(opts, report, f"imported {len(report)} domain(s) from {src}: "
                        + ", ".join(f"{domain} (+{added['triples_added']} triples, +{added['chunks_added']} chunks)"
                                    for domain, added in report.items()))


@app.command(cls=_Command)
def demo(
    ctx: typer.Context,
    graphs: Path | None = typer.Option(None, "--graphs", help="Folder of domain packs (default: the bundled graphs/)."),
) -> None:
    """Load the bundled domain packs into the KB and ask each pack's example questions."""
    from kgllm.demo import run_demo

    opts: Options = ctx.obj
    if graphs is not None and not any(graphs.glob("*/manifest.yaml")):  # the demo would load and ask nothing
        raise ConfigError(f"--graphs {str(graphs)!r} holds no domain packs (folders with a manifest.yaml)")
    with _undone_if_new(opts.kb), opts.open() as kb:  # a failed demo into a new KB leaves none behind
        result = run_demo(kb, graphs, progress=opts.progress, echo=None if opts.json else typer.echo)
    if opts.json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False, default=str))


# `kgllm eval` and `kgllm train` live in their own module; importing it registers them here, in this order.
from kgllm import cli_benchmarks as _cli_benchmarks  # noqa: E402,F401


@app.command(cls=_Command)
def version(ctx: typer.Context) -> None:
    """Print the kgllm version."""
    from kgllm import __version__

    _emit(ctx.obj, {"version": __version__}, __version__)


_HOISTED = ("--json", "--debug")


def _hoist_flags(argv: list[str]) -> list[str]:
    """Accept ``--json`` and ``--debug`` after the command too (``kgllm stats --json``): they are options
    of the group, so they move before the command name. One given as the value of ``-o``/``--option`` stays."""
    command = _command_index(argv)
    if command is None:
        return argv
    tail = argv[command:]
    moved = [i for i, arg in enumerate(tail) if arg in _HOISTED and (i == 0 or tail[i - 1] not in ("-o", "--option"))]
    if not moved:
        return argv
    return argv[:command] + [tail[i] for i in moved] + [arg for i, arg in enumerate(tail) if i not in moved]


def _command_index(argv: list[str]) -> int | None:
    """Where the command name is: the first argument that is neither a global option nor its value
    (``kgllm --kb demo stats`` names a KB folder ``demo``, not the ``demo`` command)."""
    import typer.main

    takes_value = {name for param in typer.main.get_command(app).params
                   if param.param_type_name == "option" and not getattr(param, "is_flag", False)
                   for name in param.opts}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in takes_value else 1
    return i if i < len(argv) and argv[i] in _command_names() else None


def _command_names() -> set[str]:
    """The names of the ``kgllm`` commands."""
    return {command.name or command.callback.__name__.replace("_", "-")
            for command in app.registered_commands if command.callback is not None}


def _usage_errors() -> tuple[type[BaseException], ...]:
    """click's usage-error class, and typer's own copy of it (typer >= 0.20 vendors click)."""
    import click

    kinds: list[type[BaseException]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:  # typer before it vendored click
        pass
    else:
        kinds.append(TyperClickException)
    return tuple(kinds)


def _error(exc: BaseException, debug: bool) -> int:
    """Report an expected error: one line ``ErrorType: message``, or with ``debug`` the whole traceback."""
    if debug:
        typer.echo("".join(traceback.format_exception(exc)).rstrip("\n"), err=True)
    else:  # one line even when the message has several (a backend's error quoted in it)
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        typer.echo(f"{type(exc).__name__}: {message}", err=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app, turning kgllm errors (and OS errors, such as an output path that cannot
    be created) into one line and exit code 1 (the traceback instead with ``--debug`` or ``KGLLM_DEBUG``
    set to anything but ``0``); usage errors (an unknown option, a missing argument) print click's usage
    message and exit 2."""
    args = _hoist_flags(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args[:_command_index(args)] or os.environ.get("KGLLM_DEBUG", "") not in ("", "0")
    # The Neo4j driver logs what kgllm then reports as its one-line error ("Unable to retrieve routing
    # information"); without a handler Python would print those records on stderr too.
    driver_log = logging.getLogger("neo4j")
    if not driver_log.handlers:
        driver_log.addHandler(logging.NullHandler())
        driver_log.propagate = False
    try:
        app(args=args, standalone_mode=False)
    except KGLLMError as exc:
        return _error(exc, debug)
    except OSError as exc:  # a path that cannot be written (--kb, --out, an export folder): one line too
        return _error(exc, debug)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return 1
    except _usage_errors() as exc:
        exc.show()  # type: ignore[attr-defined]
        return int(getattr(exc, "exit_code", 2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
