/*
 * hostport.c - "HOST:PORT" (see hostport.h).
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "hostport.h"
#include "util.h"

int hostport_split(const char *s, const char *default_port, char **host, char **port)
{
	const char *colon;
	const char *h = s;
	size_t hl;

	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || (close[1] != ':' && (close[1] || !default_port)))
			return -1;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close[1] ? close + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		if (!colon && !default_port)
			return -1;
		hl = colon ? (size_t)(colon - s) : strlen(s);
	}
	uint64_t p;
	const char *why;
	const char *port_text = colon ? colon + 1 : default_port;
	if (hl == 0 || parse_uint(port_text, 65535, &p, &why) < 0 || p == 0)
		return -1;
	for (size_t i = 0; i < hl; i++)
		if (isspace((unsigned char)h[i]) || h[i] == '/')
			return -1;
	*host = xstrndup(h, hl);
	*port = xstrdup(port_text);
	return 0;
}
