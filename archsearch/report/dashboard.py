"""optuna-dashboard on a read-only storage, served on loopback until Ctrl-C."""
from __future__ import annotations

from typing import Any

from archsearch.core.errors import ConfigError


def serve_dashboard(storage: Any, url: str, study: str, port: int) -> None:
    """optuna-dashboard on 127.0.0.1:port, on the read-only storage, until Ctrl-C.

    The server runs in a thread so that Ctrl-C always reaches the main thread: under optuna_dashboard.run_server,
    wsgiref swallows a KeyboardInterrupt that lands while a request is answered, and the browser polls."""
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    import optuna_dashboard

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:  # one line per poll of the browser otherwise
            pass

    try:
        server = make_server("127.0.0.1", port, optuna_dashboard.wsgi(storage), Server, QuietHandler)
    except OSError as e:
        raise ConfigError(f"--port={port}: cannot listen on 127.0.0.1:{port} ({e.strerror or e}); "
                          "choose another port") from None
    try:
        page = f"/dashboard/studies/{storage.get_study_id_from_name(study)}"
    except KeyError:  # no such study (yet): the list of studies
        page = "/dashboard"
    print(f"optuna-dashboard on {url} (read-only): http://127.0.0.1:{port}{page}  (Ctrl-C to stop)", flush=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    finally:
        server.server_close()
