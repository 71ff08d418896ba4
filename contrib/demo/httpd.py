"""A tiny JSON-over-HTTP server on the standard library, for the demos."""
import http.server
import json
import socketserver


class _Handler(http.server.BaseHTTPRequestHandler):
    routes = {}

    def do_GET(self):
        fn = self.routes.get(self.path.split("?")[0])
        if fn is None:
            self.send_error(404)
            return
        body = json.dumps(fn()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(host, port, routes):
    """Serve routes ({path: fn returning JSON-able}) forever."""
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = _Server((host, port), handler)
    return server
