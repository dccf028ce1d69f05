"""Command line: start the PowerSchool SIS simulator, or generate / export a district.

    python -m sandbox.powerschool --dataset demo [--port 8443] [--latency-ms 50] [--throttle-ms 200] ...
    python -m sandbox.powerschool generate --size L --seed 1
    python -m sandbox.powerschool export-fixture --dataset tiny --out district.json

The server prints its URL, client id and secret, the CA bundle to trust and the admin
token. The secret and the admin token are random per start unless given through the
environment (POWERSCHOOL_SANDBOX_CLIENT_SECRET, POWERSCHOOL_SANDBOX_ADMIN_TOKEN); they are
sandbox credentials, never real ones. docs/sandbox-powerschool.md documents every option.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from sandbox import tls
from sandbox.powerschool import datasets, fixture, generator, store
from sandbox.powerschool.options import DEFAULT_MAX_PAGE_SIZES, OptionsError, ServerOptions
from sandbox.powerschool.server import PowerSchoolApp, TLSServer, make_ssl_context, new_secret

DEFAULT_CLIENT_ID = "sandbox-learning-plugin"


def _options_from(arguments: argparse.Namespace) -> ServerOptions:
    changes: dict[str, object] = {}
    environment = os.environ.get("POWERSCHOOL_SANDBOX_OPTIONS")
    for source, text in (("POWERSCHOOL_SANDBOX_OPTIONS", environment), ("--options", arguments.options)):
        if text:
            try:
                changes.update(json.loads(text))
            except json.JSONDecodeError as error:
                raise OptionsError(f"{source} is not valid JSON: {error}") from error
    flags = {
        "latency_ms": arguments.latency_ms,
        "latency_jitter_ms": arguments.latency_jitter_ms,
        "throttle_ms": arguments.throttle_ms,
        "error_rate": arguments.error_rate,
        "reset_rate": arguments.reset_rate,
        "slow_rate": arguments.slow_rate,
        "slow_ms": arguments.slow_ms,
        "resubmit_rate": arguments.resubmit_rate,
        "truncate_rate": arguments.truncate_rate,
        "token_lifetime_seconds": arguments.token_lifetime,
        "oversize_page": arguments.oversize_page,
        "empty_page_style": arguments.empty_page,
        "fault_seed": arguments.fault_seed,
    }
    changes.update({name: value for name, value in flags.items() if value is not None})
    if arguments.max_page_size:
        sizes = {}
        for item in arguments.max_page_size:
            resource_name, _, size = item.partition("=")
            if not size.isdigit():
                raise OptionsError(f"--max-page-size expects RESOURCE=N, got {item!r}")
            sizes[resource_name] = int(size)
        changes["max_page_sizes"] = {**dict(changes.get("max_page_sizes") or {}), **sizes}  # type: ignore[arg-type]
    return ServerOptions().update(changes)


def _irregularities(arguments: argparse.Namespace) -> bool | None:
    choice = getattr(arguments, "irregularities", None)
    return None if choice is None else choice == "on"


def serve(arguments: argparse.Namespace) -> int:
    try:
        options = _options_from(arguments)
        dataset_path = datasets.resolve_dataset(
            arguments.dataset, seed=arguments.seed, irregularities=_irregularities(arguments)
        )
    except (OptionsError, store.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    client_id = os.environ.get("POWERSCHOOL_SANDBOX_CLIENT_ID") or arguments.client_id
    client_secret = os.environ.get("POWERSCHOOL_SANDBOX_CLIENT_SECRET") or new_secret()
    admin_token = os.environ.get("POWERSCHOOL_SANDBOX_ADMIN_TOKEN") or new_secret()
    tls_directory = Path(arguments.tls_dir) if arguments.tls_dir else tls.DEFAULT_TLS_DIR
    ca_bundle = tls.ensure_ca(tls_directory)
    extra_names = [*arguments.hostname, *(name.strip() for name in os.environ.get("SANDBOX_HOSTNAMES", "").split(","))]
    hostnames = list(dict.fromkeys([*tls.DEFAULT_HOSTNAMES, *(name for name in extra_names if name)]))
    certificate, key = tls.server_certificate(tls_directory, hostnames)
    run_directory = Path(tempfile.mkdtemp(prefix="powerschool-sandbox-"))
    try:
        database = store.make_working_copy(dataset_path, run_directory)
        app = PowerSchoolApp(
            database, client_id=client_id, client_secret=client_secret, admin_token=admin_token, options=options
        )
        try:
            server = TLSServer((arguments.host, arguments.port), app, make_ssl_context(certificate, key))
        except OSError as error:
            print(
                f"error: cannot listen on {arguments.host}:{arguments.port}: {error} (try --port 0 for any free port)",
                file=sys.stderr,
            )
            return 2
        # Listening on every interface (a container): advertise the first extra certificate name.
        host = arguments.host
        if host in ("0.0.0.0", "::"):
            host = next((name for name in extra_names if name), "127.0.0.1")
        host = host if ":" not in host else f"[{host}]"
        app.base_url = f"https://{host}:{server.server_address[1]}"
        details = {
            "base_url": app.base_url,
            "port": server.server_address[1],
            "client_id": client_id,
            "client_secret": client_secret,
            "admin_token": admin_token,
            "ca_bundle": str(ca_bundle),
            "dataset_path": str(dataset_path),
            "database_path": str(database),
            "pid": os.getpid(),
        }
        if arguments.ready_file:
            ready = Path(arguments.ready_file)
            temporary = ready.with_suffix(".tmp")
            temporary.write_text(json.dumps(details))
            temporary.chmod(0o600)
            temporary.replace(ready)
        if not arguments.quiet:
            info = app.dataset_info
            print(f"PowerSchool SIS sandbox ({info.get('district_name')}, dataset {dataset_path.name})")
            print(f"  URL            {app.base_url}")
            print(f"  client id      {client_id}")
            print(f"  client secret  {client_secret}")
            print(f"  CA bundle      {ca_bundle}")
            print(f"  admin token    {admin_token}  (header X-Sandbox-Admin-Token)")
            print("  Ctrl-C stops it.", flush=True)

        def stop(*_: object) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if arguments.exit_with_parent:
            # A test run killed hard must not leave its simulator running on a shared machine.
            parent = os.getppid()

            def watch_parent() -> None:
                while os.getppid() == parent:
                    time.sleep(1)
                stop()

            threading.Thread(target=watch_parent, daemon=True).start()
        server.serve_forever(poll_interval=0.2)
        server.server_close()
    finally:
        shutil.rmtree(run_directory, ignore_errors=True)
    return 0


def generate_command(arguments: argparse.Namespace) -> int:
    target = Path(arguments.out) if arguments.out else None
    started = time.perf_counter()
    if target is None:
        path = datasets.resolve_dataset(arguments.size, seed=arguments.seed, irregularities=_irregularities(arguments))
    else:
        path = target
        generator.generate(target, size=arguments.size, seed=arguments.seed, irregularities=_irregularities(arguments))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with store.DatasetStore(path) as dataset:
        counts = {table: dataset.count(table) for table in store.SIS_TABLES}
        irregularities = dataset.info().get("irregularities", {})
    print(
        json.dumps(
            {
                "dataset": str(path),
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "rows": counts,
                "irregularities": irregularities,
            },
            indent=1,
        )
    )
    return 0


def export_command(arguments: argparse.Namespace) -> int:
    path = datasets.resolve_dataset(arguments.dataset, seed=arguments.seed, irregularities=_irregularities(arguments))
    fixture.export_fixture(path, Path(arguments.out))
    print(f"wrote {arguments.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m sandbox.powerschool", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    main.add_argument(
        "--dataset",
        default="demo",
        help=f"a size ({', '.join(generator.SIZES)}), a fixture .json or a dataset .sqlite (default demo)",
    )
    main.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    main.add_argument(
        "--irregularities",
        choices=("on", "off"),
        default=None,
        help="generated districts with the irregularities of real ones (default: "
        "POWERSCHOOL_SANDBOX_IRREGULARITIES, else the generator's default)",
    )
    main.add_argument("--host", default="127.0.0.1")
    main.add_argument("--port", type=int, default=8443, help="0 = any free port (default 8443)")
    main.add_argument(
        "--hostname",
        action="append",
        default=[],
        help="extra name in the certificate (localhost, 127.0.0.1 and ::1 always); repeatable, "
        "or SANDBOX_HOSTNAMES=a,b",
    )
    main.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    main.add_argument("--tls-dir", help="where the sandbox CA lives (default .sandbox/tls or SANDBOX_TLS_DIR)")
    main.add_argument("--latency-ms", type=int)
    main.add_argument("--latency-jitter-ms", type=int)
    main.add_argument("--throttle-ms", type=int, help="minimum interval between two requests of a client")
    main.add_argument("--error-rate", type=float, help="share of requests answered 500/502/503")
    main.add_argument("--reset-rate", type=float, help="share of requests whose connection is reset")
    main.add_argument("--slow-rate", type=float, help="share of requests answered after --slow-ms")
    main.add_argument("--slow-ms", type=int)
    main.add_argument("--truncate-rate", type=float, help="share of requests whose answer stops half-way")
    main.add_argument("--resubmit-rate", type=float, help="share of score writes answered 412 Resubmit")
    main.add_argument("--fault-seed", type=int)
    main.add_argument("--token-lifetime", type=int, help="access token lifetime in seconds")
    main.add_argument(
        "--max-page-size",
        action="append",
        metavar="RESOURCE=N",
        help=f"per resource ({', '.join(DEFAULT_MAX_PAGE_SIZES)}); repeatable",
    )
    main.add_argument("--oversize-page", choices=["clamp", "refuse"])
    main.add_argument(
        "--empty-page", choices=["rotate", "missing", "null", "empty_string", "empty_list", "empty_object"]
    )
    main.add_argument("--options", help='any ServerOptions as JSON, e.g. \'{"field_grants": {"students": ["dcid"]}}\'')
    main.add_argument("--ready-file", help="write the connection details (JSON, mode 600) here once listening")
    main.add_argument("--quiet", action="store_true", help="print nothing at start")
    main.add_argument("--exit-with-parent", action="store_true", help="stop when the starting process ends")
    commands = main.add_subparsers(dest="command")
    generate = commands.add_parser("generate", help="generate a district dataset and print its size and timing")
    generate.add_argument("--size", default="demo", choices=list(generator.SIZES))
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--irregularities", choices=("on", "off"), default=None)
    generate.add_argument("--out", help="write here instead of the .sandbox/datasets cache")
    export = commands.add_parser("export-fixture", help="write a dataset out as a JSON fixture")
    export.add_argument("--dataset", default="tiny")
    export.add_argument("--seed", type=int, default=1)
    export.add_argument("--irregularities", choices=("on", "off"), default=None)
    export.add_argument("--out", required=True)
    return main


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    if arguments.command == "generate":
        return generate_command(arguments)
    if arguments.command == "export-fixture":
        return export_command(arguments)
    return serve(arguments)


if __name__ == "__main__":
    sys.exit(main())
