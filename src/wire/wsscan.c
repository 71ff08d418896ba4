/*
 * wsscan.c - see wsscan.h.  A byte at a time through the headers, a jump
 * over each payload: a client's message costs a few steps, whatever its
 * size.
 */
#include "autoconfig.h"

#include "wsscan.h"

size_t ws_scan(struct ws_scan *s, const unsigned char *p, size_t n, enum ws_fault *fault)
{
	size_t i = 0;
	size_t start = 0;	/* where the frame at hand began in p (0: before p) */

	*fault = WS_FAULT_NONE;
	while (i < n) {
		switch (s->state) {
		case WS_SCAN_OPCODE:
			start = i;
			s->opcode = p[i++] & 0x0F;
			s->state = WS_SCAN_LENGTH;
			break;
		case WS_SCAN_LENGTH: {
			unsigned len = p[i] & 0x7F;
			if (!(p[i] & 0x80))
				*fault = WS_FAULT_UNMASKED;
			else if ((s->opcode & 0x08) && len > 125)
				*fault = WS_FAULT_CONTROL_SIZE;
			if (*fault)
				return start;
			i++;
			s->left = len;
			s->need = len == 126 ? 2 : len == 127 ? 8 : 0;
			if (s->need) {
				s->left = 0;
				s->state = WS_SCAN_EXTENDED;
			} else {
				s->need = 4;
				s->state = WS_SCAN_KEY;
			}
			break;
		}
		case WS_SCAN_EXTENDED:
			s->left = s->left << 8 | p[i++];
			if (--s->need == 0) {
				s->need = 4;
				s->state = WS_SCAN_KEY;
			}
			break;
		case WS_SCAN_KEY:
			i++;
			if (--s->need == 0)
				s->state = s->left ? WS_SCAN_PAYLOAD : WS_SCAN_OPCODE;
			break;
		case WS_SCAN_PAYLOAD: {
			size_t skip = n - i < s->left ? n - i : (size_t)s->left;
			i += skip;
			s->left -= skip;
			if (!s->left)
				s->state = WS_SCAN_OPCODE;
			break;
		}
		}
	}
	return n;
}

const char *ws_fault_text(enum ws_fault fault)
{
	switch (fault) {
	case WS_FAULT_UNMASKED:
		return "a frame from the client that is not masked";
	case WS_FAULT_CONTROL_SIZE:
		return "a control frame of more than 125 bytes";
	case WS_FAULT_NONE:
		break;
	}
	return "no fault";
}
