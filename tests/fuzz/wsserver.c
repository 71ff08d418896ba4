/* wsserver.c - see wsserver.h. */
#include "autoconfig.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "util.h"
#include "wsserver.h"

static int listen_fd = -1;
static char url[200];
static pthread_t thread;
static struct sbuf answer;
static bool raw_handshake;

const char *ws_url(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (listen_fd >= 0)
		return url;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/bus.sock", fz_tmpdir());
	snprintf(url, sizeof(url), "unix:%s", sa.sun_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(listen_fd, 4) < 0) {
		perror(sa.sun_path);
		abort();
	}
	return url;
}

/* The Sec-WebSocket-Accept for the key in the request (RFC 6455 4.2.2). */
static void accept_for(const char *req, char out[64])
{
	const char *k = strcasestr(req, "\r\nSec-WebSocket-Key:");
	char joined[128];
	unsigned char digest[SHA_DIGEST_LENGTH];

	out[0] = '\0';
	if (!k)
		return;
	k += strlen("\r\nSec-WebSocket-Key:");
	while (*k == ' ')
		k++;
	int n = snprintf(joined, sizeof(joined), "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
			 (int)strcspn(k, "\r\n"), k);
	SHA1((const unsigned char *)joined, (size_t)n, digest);
	EVP_EncodeBlock((unsigned char *)out, digest, sizeof(digest));
}

/* A server frame: unmasked, FIN, text. */
static void put_text(struct sbuf *b, const char *text)
{
	size_t len = strlen(text);
	unsigned char h[2] = {0x81, (unsigned char)len};

	sbuf_add(b, h, 2);
	sbuf_add(b, text, len);
}

static void *serve(void *arg)
{
	char req[8192], acc[64];
	size_t got = 0;
	struct sbuf out = {0};
	(void)arg;

	int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct timeval tv = {2, 0};	/* a client that says nothing: give up */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(req) - 1) {
		ssize_t n = read(fd, req + got, sizeof(req) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[got] = '\0';
	accept_for(req, acc);
	if (raw_handshake) {
		const char *p = answer.buf ? answer.buf : "", *end = p + answer.len, *at;
		while ((at = memmem(p, (size_t)(end - p), "@ACCEPT@", 8))) {
			sbuf_add(&out, p, (size_t)(at - p));
			sbuf_adds(&out, acc);
			p = at + 8;
		}
		sbuf_add(&out, p, (size_t)(end - p));
	} else {
		sbuf_addf(&out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			  "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: cohort.v1\r\n\r\n", acc);
		put_text(&out, "{\"op\":\"welcome\",\"resumed\":false}");
		put_text(&out, "{\"op\":\"ok\",\"id\":1}");
		sbuf_add(&out, answer.buf ? answer.buf : "", answer.len);
	}
	for (size_t done = 0; done < out.len;) {
		ssize_t n = send(fd, out.buf + done, out.len - done, MSG_NOSIGNAL);
		if (n <= 0)
			break;	/* the client gave up and closed */
		done += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, req, sizeof(req)) > 0)	/* what the client still sends */
		;
	close(fd);
	sbuf_free(&out);
	return NULL;
}

void ws_serve(const uint8_t *data, size_t size, bool handshake)
{
	ws_url();
	answer.len = 0;
	sbuf_add(&answer, data, size);
	raw_handshake = handshake;
	if (pthread_create(&thread, NULL, serve, NULL) != 0)
		abort();
}

void ws_done(void)
{
	pthread_join(thread, NULL);
}
