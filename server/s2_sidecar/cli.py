"""`s2-sidecar`: serve, manage personas, speak a line, download the model."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from s2_plugin.audio import duration_s
from s2_plugin.client import S2Client, S2Error, S2StatusError
from s2_plugin.personas import Persona, PersonaError, load_personas
from s2_plugin.phonemes import PhonemeError
from s2_plugin.protocol import DEFAULT_PORT, DEFAULT_URL, DEFAULT_VOICE, SAMPLE_RATE
from s2_plugin.script import narrate, parse, parts
from s2_sidecar import benchmark, doctor, outputs, voices
from s2_sidecar.admission import SCHEDULING
from s2_sidecar.app import create_app
from s2_sidecar.engines import ENGINES, Engine, choose
from s2_sidecar.engines.sglang_process import MODEL_PATH, Launch
from s2_sidecar.errors import SidecarError
from s2_sidecar.httpserver import serve
from s2_sidecar.metrics import Metrics
from s2_sidecar.middleware import is_local, served_hosts
from s2_sidecar.pronunciations import Pronunciations
from s2_sidecar.settings import Settings
from s2_sidecar.store import MAX_PERSONAS, MAX_STORE_BYTES, VOICE_EXISTS, PersonaStore

log = logging.getLogger("s2_sidecar")

API_KEY_ENV = "S2_SIDECAR_API_KEY"
URL_ENV = "S2_SIDECAR_URL"
"""Where the client commands find the sidecar, as the examples read it."""
_FORMATS_HELP = "the suffix picks the format: " + ", ".join(s[1:] for s in outputs.SUFFIXES)


def default_store() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "s2-sidecar" / "personas"


class UsageError(Exception):
    """A command line that cannot work; the message says what to change."""


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code = args.run(args)
    except (UsageError, PersonaError, SidecarError) as e:
        print(f"s2-sidecar: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s2-sidecar", description=__doc__)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    _serve_arguments(sub.add_parser("serve", help="run the sidecar"))
    _personas_arguments(sub.add_parser("personas", help="manage the personas of a running sidecar"))
    _say_arguments(sub.add_parser("say", help="speak a line through a running sidecar"))
    _narrate_arguments(
        sub.add_parser("narrate", help="speak a script of several voices through a running sidecar")
    )
    download = sub.add_parser("download", help=f"fetch {MODEL_PATH} from Hugging Face")
    download.add_argument("--model", default=MODEL_PATH)
    download.add_argument("--revision", default=None)
    download.set_defaults(run=_download)
    doctor.add_arguments(sub.add_parser("doctor", help=doctor.HELP), default_store())
    benchmark.add_arguments(
        sub.add_parser("bench", help=benchmark.HELP), os.environ.get(API_KEY_ENV)
    )
    return p


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--host", default="127.0.0.1", help="default 127.0.0.1; any other needs --api-key"
    )
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="auto (default): S2 on SGLang-Omni where a GPU and the package exist, else preview",
    )
    serve.add_argument("--personas", type=Path, help="personas TOML file to register at start")
    serve.add_argument(
        "--pronunciations", type=Path, help="pronunciations TOML file to load at start"
    )
    serve.add_argument("--store", type=Path, default=default_store(), help="persona directory")
    serve.add_argument(
        "--api-key",
        help=f"visible in `ps` to every user: prefer ${API_KEY_ENV} or --api-key-file",
    )
    serve.add_argument("--api-key-file", type=Path, help="a file holding the API key")
    serve.add_argument(
        "--voice-alias",
        action="append",
        default=[],
        metavar="NAME=PERSONA",
        help="a voice name that stands for a persona, e.g. alloy=joe (OpenAI's clients send "
        "only OpenAI's voice names); repeatable",
    )
    for flag, what in (
        ("--allowed-host", "a host name to serve besides localhost and loopback addresses"),
        ("--allowed-origin", "a web page origin (https://app.example) that may change things"),
    ):
        serve.add_argument(flag, action="append", default=[], help=f"{what}; repeatable")
    _limit_arguments(serve)
    _sglang_arguments(serve)
    serve.set_defaults(run=_serve)


def _limit_arguments(serve: argparse.ArgumentParser) -> None:
    lim = serve.add_argument_group("limits (see docs/api.md, 'Limits and timeouts')")
    d = Settings()
    for flag, kind, default, what in (
        ("--header-timeout", float, d.header_timeout, "s to send request headers"),
        ("--body-timeout", float, d.body_timeout, "s to send a request body"),
        ("--write-timeout", float, d.write_timeout, "s a client may leave audio unread"),
        ("--keepalive-timeout", float, d.keepalive_timeout, "s an idle connection stays"),
        ("--max-connections", int, d.max_connections, "open connections at most"),
        ("--reference-budget", int, d.reference_budget, "bytes of clips in flight, all requests"),
        ("--max-personas", int, MAX_PERSONAS, "personas the store holds"),
        ("--max-store-bytes", int, MAX_STORE_BYTES, "bytes of clips the store holds"),
        ("--max-concurrency", int, None, "generations at once (default: the engine's limit)"),
        ("--queue-size", int, None, "requests waiting for a slot (default: max-concurrency)"),
        ("--queue-wait", float, d.queue_wait, "s a queued request waits before its 503"),
        ("--lead", float, d.lead, "s before its due time a look-ahead request is generated"),
        ("--drain-timeout", float, d.drain_timeout, "s for streams to finish after SIGTERM"),
    ):
        lim.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")
    lim.add_argument(
        "--scheduling",
        choices=SCHEDULING,
        default=d.scheduling,
        help="generate the request whose audio is due first, holding look-ahead until it is "
        "nearly due, or serve in arrival order (default %(default)s)",
    )


def _sglang_arguments(serve: argparse.ArgumentParser) -> None:
    g = serve.add_argument_group("sglang_omni engine")
    g.add_argument("--model-path", default=MODEL_PATH, help="HF id or local directory")
    g.add_argument(
        "--sglang-url",
        help="use the SGLang-Omni (or sgl-omni-router-py) at this URL; nothing is launched",
    )
    launch = Launch()  # the defaults, stated once, in the engine
    g.add_argument("--sglang-command", default=shlex.join(launch.command), help="run SGLang-Omni")
    g.add_argument("--sglang-port", type=int, default=launch.port, help="loopback; 0: a free one")
    g.add_argument("--stream-stride", type=int, default=launch.stream_stride, help="chunk 1 frames")
    g.add_argument(
        "--stream-followup-stride", type=int, default=launch.stream_followup_stride, help="frames"
    )
    g.add_argument("--sglang-args", default="", help="extra `sgl-omni serve` arguments")
    g.add_argument("--sglang-read-timeout", type=float, default=launch.read_timeout, help="stall s")
    g.add_argument("--sglang-backoff", type=float, default=launch.backoff[0], help="restart delay")
    g.add_argument(
        "--sglang-health-interval",
        type=float,
        default=launch.health_interval,
        help=f"health check period, s; {launch.health_failures} failures in a row relaunch it",
    )


def _client_arguments(p: argparse.ArgumentParser) -> None:
    """Where the running sidecar is, for the commands that talk to one."""
    p.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the sidecar (default ${URL_ENV}, else {DEFAULT_URL})",
    )
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV))


def _personas_arguments(personas: argparse.ArgumentParser) -> None:
    _client_arguments(personas)
    psub = personas.add_subparsers(required=True, metavar="ACTION")
    add = psub.add_parser("add", help="register a persona from a clip and its transcript")
    add.add_argument("name")
    add.add_argument("clip", type=Path)
    add.add_argument("--transcript", required=True, help="exactly what the clip says")
    add.add_argument("--style", help="default style tag, e.g. 'warm'")
    add.add_argument("--replace", action="store_true", help="overwrite a different persona")
    add.set_defaults(run=lambda a: _client_run(a, _personas_add))
    ls = psub.add_parser("list", help="list personas")
    ls.set_defaults(run=lambda a: _client_run(a, _personas_list))
    rm = psub.add_parser("rm", help="delete a persona")
    rm.add_argument("name")
    rm.set_defaults(run=lambda a: _client_run(a, _personas_rm))


def _say_arguments(say: argparse.ArgumentParser) -> None:
    say.add_argument("text")
    say.add_argument("--persona", default=DEFAULT_VOICE)
    say.add_argument("-o", "--output", type=Path, default=Path("out.wav"), help=_FORMATS_HELP)
    _client_arguments(say)
    say.set_defaults(run=lambda a: _client_run(a, _say))


def _narrate_arguments(narrate: argparse.ArgumentParser) -> None:
    narrate.add_argument(
        "script", type=Path, help="lines like 'AVA: Hello.', or S2's '<|speaker:0|> Hello.'"
    )
    narrate.add_argument("--cast", required=True, help="personas, speaker 0 first: ava,ben")
    narrate.add_argument("-o", "--output", type=Path, default=Path("story.wav"), help=_FORMATS_HELP)
    narrate.add_argument("--seed", type=int, default=None)
    _client_arguments(narrate)
    narrate.set_defaults(run=lambda a: _client_run(a, _narrate))


# --- serve ---------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    args.api_key = _api_key(args)
    if not is_local(args.host) and not args.api_key:
        raise UsageError(
            f"refusing to listen on {args.host} without an API key: anyone who can reach it "
            f"could use the GPU and your voices; pass --api-key or set ${API_KEY_ENV}, or "
            "listen on 127.0.0.1"
        )
    metrics = Metrics()
    store = PersonaStore(args.store, max_personas=args.max_personas, max_bytes=args.max_store_bytes)
    store.load()
    if args.personas:
        for persona in load_personas(args.personas):
            # The file is the source of truth for the names it lists.
            store.register(
                persona.name, persona.clip_bytes(), persona.transcript, persona.style, replace=True
            )
    if args.pronunciations:
        try:
            Pronunciations(store.root).load_file(args.pronunciations)
        except PhonemeError as e:
            raise UsageError(str(e)) from e
    engine = _make_engine(args, metrics)
    if not engine.preview:  # S2 without a reference speaks in a new random voice each time
        voices.ensure_default(store)
    settings = Settings(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        write_timeout=args.write_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
        max_concurrency=args.max_concurrency,
        queue_size=args.queue_size,
        queue_wait=args.queue_wait,
        scheduling=args.scheduling,
        lead=args.lead,
        drain_timeout=args.drain_timeout,
        reference_budget=args.reference_budget,
        allowed_hosts=served_hosts(args.host, args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
    )
    app = create_app(
        engine,
        store,
        metrics=metrics,
        api_key=args.api_key,
        settings=settings,
        aliases=_aliases(args.voice_alias),
    )
    try:
        asyncio.run(serve(app, args.host, args.port, settings))
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        raise UsageError(
            f"port {args.port} on {args.host} is in use (is an s2-sidecar already running? "
            "`s2-sidecar doctor` says); stop what uses it, or pass --port"
        ) from None
    return 0


MIN_KEY_CHARS = 16


def _aliases(pairs: list[str]) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for pair in pairs:
        name, sep, persona = pair.partition("=")
        if not sep or not name.strip() or not persona.strip():
            raise UsageError(f"--voice-alias {pair!r}: write it as NAME=PERSONA, e.g. alloy=joe")
        aliases[name.strip()] = persona.strip()
    return aliases


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file, $S2_SIDECAR_API_KEY or --api-key; blank is refused."""
    if args.api_key_file is not None:
        try:
            key: str | None = args.api_key_file.read_text().strip()
        except OSError as e:
            raise UsageError(f"cannot read --api-key-file {args.api_key_file}: {e}") from e
        source = str(args.api_key_file)
    elif args.api_key is not None:
        log.warning(
            "--api-key is visible to every user of this machine (ps); "
            "use $%s or --api-key-file instead",
            API_KEY_ENV,
        )
        key, source = args.api_key, "--api-key"
    else:
        key, source = os.environ.get(API_KEY_ENV), f"${API_KEY_ENV}"
    if key is None:
        return None
    if not key.strip():
        raise UsageError(f"the API key from {source} is blank; set a real key or leave it unset")
    if len(key) < MIN_KEY_CHARS:
        log.warning(
            "the API key from %s has %d characters; use %d or more (e.g. `openssl rand -hex 24`)",
            source,
            len(key),
            MIN_KEY_CHARS,
        )
    return key


def _make_engine(args: argparse.Namespace, metrics: Metrics) -> Engine:
    kind = "sglang_omni" if args.sglang_url and args.engine == "auto" else choose(args.engine)
    if kind == "preview":
        from s2_sidecar.engines.preview import PreviewEngine

        return PreviewEngine(metrics)
    from s2_sidecar.engines.sglang_omni import SGLangOmniEngine

    try:
        launch = Launch(
            command=shlex.split(args.sglang_command),
            model_path=args.model_path,
            port=args.sglang_port,
            extra_args=shlex.split(args.sglang_args),
            media_dir=args.store,
            read_timeout=args.sglang_read_timeout,
            stream_stride=args.stream_stride,
            stream_followup_stride=args.stream_followup_stride,
            backoff=(args.sglang_backoff, Launch.backoff[1]),
            health_interval=args.sglang_health_interval,
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    return SGLangOmniEngine(metrics, launch, url=args.sglang_url)


# --- client commands -----------------------------------------------------------------------


ClientCommand = Callable[[S2Client, argparse.Namespace], Awaitable[int]]


def _client_run(args: argparse.Namespace, command: ClientCommand) -> int:
    async def run() -> int:
        async with S2Client(args.url, api_key=args.api_key, read_timeout=120) as client:
            return await command(client, args)

    try:
        return asyncio.run(run())
    except (S2Error, ValueError) as e:  # bad text, persona or script, caught before sending
        print(f"s2-sidecar: {e}", file=sys.stderr)
        return 1


async def _personas_add(client: S2Client, args: argparse.Namespace) -> int:
    persona = Persona(args.name, args.clip, args.transcript, args.style)
    try:
        info = await client.register(persona, replace=args.replace)
    except S2StatusError as e:
        if e.code != VOICE_EXISTS:
            raise
        raise UsageError(
            f"persona {args.name!r} exists with a different clip, transcript or style; "
            "add --replace to overwrite it, or pick another name"
        ) from None
    print(f"{info.name}: {info.duration_s:.1f} s, sha256 {info.sha256[:12]}")
    for warning in info.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


async def _personas_list(client: S2Client, args: argparse.Namespace) -> int:
    found = await client.list_voices()
    if not found:
        print(
            f"no personas on {args.url} yet: add one with `s2-sidecar personas add NAME CLIP "
            f"--transcript TEXT`, or in the studio at {args.url}/",
            file=sys.stderr,
        )
    for info in found:
        style = f" [{info.style}]" if info.style else ""
        print(f"{info.name}\t{info.duration_s:.1f} s{style}\t{info.transcript[:60]}")
    return 0


async def _personas_rm(client: S2Client, args: argparse.Namespace) -> int:
    await client.delete_voice(args.name)
    return 0


async def _say(client: S2Client, args: argparse.Namespace) -> int:
    _output_format(args.output)
    pcm = await client.synthesize(args.text, voice=args.persona)
    with outputs.SoundWriter(args.output) as out:
        out.write(pcm)
    print(f"{args.output}: {duration_s(pcm):.2f} s")
    return 0


async def _narrate(client: S2Client, args: argparse.Namespace) -> int:
    cast = [name.strip() for name in args.cast.split(",") if name.strip()]
    try:
        text = args.script.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the script {args.script}: {e}") from e
    _output_format(args.output)
    planned = parts(parse(text, cast))
    params = {"seed": args.seed} if args.seed is not None else {}
    samples, done = 0, 0
    try:
        # Written as it arrives: a long story needs no memory, and a failure keeps nothing.
        with outputs.SoundWriter(args.output) as out:
            _progress(0, len(planned), 0)
            async for part, pcm in narrate(client, planned, cast, **params):
                out.write(pcm)
                samples += len(pcm) // 2
                if part.index > done:
                    done = part.index
                    _progress(done, len(planned), samples)
            _progress(len(planned), len(planned), samples)
    except BaseException:
        args.output.unlink(missing_ok=True)
        raise
    print(f"\n{args.output}: {len(planned)} parts, {samples / SAMPLE_RATE:.2f} s", file=sys.stderr)
    return 0


def _output_format(path: Path) -> None:
    """Refuse an output whose suffix names no format, before any request: a file never holds
    something its name does not say."""
    try:
        outputs.format_for(path)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _progress(done: int, total: int, samples: int) -> None:
    width = 30
    bar = "#" * (width * done // total) + "-" * (width - width * done // total)
    print(
        f"\r[{bar}] {done}/{total} parts, {samples / SAMPLE_RATE:.1f} s of audio",
        end="",
        file=sys.stderr,
        flush=True,
    )


# --- download ------------------------------------------------------------------------------


def _download(args: argparse.Namespace) -> int:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as e:
        raise UsageError("downloading needs huggingface_hub: install s2-plugin[server]") from e
    try:
        path = snapshot_download(args.model, revision=args.revision)
    except LocalEntryNotFoundError as e:
        raise UsageError(
            f"cannot download {args.model}: Hugging Face is unreachable and the model is not in "
            "the local cache; connect to the internet (or set HF_ENDPOINT to a mirror) and retry"
        ) from e
    print(path)
    return 0
