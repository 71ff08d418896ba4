/*
 * bus_nowsi.c - for the tests that drive the bus without a socket (the
 * bus unit tests, fuzz_bus): libwebsockets is not there (no wsi), so the
 * two calls the op handlers make through bus_write.c are answered here,
 * in place of the library's.  A close still happens as in cohortd
 * (bus_conn_close marks the connection; nothing is sent after).
 */
#include "autoconfig.h"

#include <libwebsockets.h>

int lws_callback_on_writable(struct lws *wsi)
{
	(void)wsi;
	return 1;
}

int lws_rx_flow_control(struct lws *wsi, int enable)
{
	(void)wsi;
	(void)enable;
	return 0;
}
