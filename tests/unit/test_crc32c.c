/* Unit tests of CRC-32C: the software path (slicing-by-8, what a CPU
 * without SSE 4.2 runs) on known vectors and against the hardware path, so
 * that it is tested on x86 machines too, where crc32c() never takes it. */
#include "autoconfig.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

/* RFC 3720 (iSCSI), B.4, and the check value of the catalogue of CRCs. */
Test(crc32c, software_known_vectors)
{
	unsigned char b[48];

	cr_assert_eq(crc32c_software(0, "123456789", 9), 0xE3069283);
	cr_assert_eq(crc32c_software(0, "", 0), 0);
	memset(b, 0, 32);
	cr_assert_eq(crc32c_software(0, b, 32), 0x8A9136AA);
	memset(b, 0xFF, 32);
	cr_assert_eq(crc32c_software(0, b, 32), 0x62A8AB43);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	cr_assert_eq(crc32c_software(0, b, 32), 0x46DD794E);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)(31 - i);
	cr_assert_eq(crc32c_software(0, b, 32), 0x113FDB5C);
	/* an iSCSI Read (10) command PDU */
	static const unsigned char pdu[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	cr_assert_eq(crc32c_software(0, pdu, sizeof(pdu)), 0xD9963A56);
}

Test(crc32c, hardware_known_vectors)
{
	unsigned char b[32];

	memset(b, 0xFF, sizeof(b));
	cr_assert_eq(crc32c_hardware(0, "123456789", 9), 0xE3069283);
	cr_assert_eq(crc32c_hardware(0, b, sizeof(b)), 0x62A8AB43);
	cr_assert_eq(crc32c(0, "123456789", 9), 0xE3069283);
}

/* Every length up to past a few 8-byte blocks, at every alignment, from
 * chained start values: the two paths agree, and so does crc32c(). */
Test(crc32c, software_equals_hardware)
{
	enum { MAX = 1100 };
	unsigned char *buf = malloc(MAX + 8);
	unsigned int seed = 12345;

	for (size_t i = 0; i < MAX + 8; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
	cr_log_info("crc32c: the CPU's crc32 instruction %s", crc32c_hardware_ok() ? "is used" : "is absent");
	uint32_t crc = 0;
	for (size_t len = 0; len <= MAX; len += len < 80 ? 1 : 37) {
		for (size_t off = 0; off < 8; off++) {
			uint32_t sw = crc32c_software(crc, buf + off, len);
			cr_assert_eq(sw, crc32c_hardware(crc, buf + off, len), "length %zu at offset %zu", len, off);
			cr_assert_eq(sw, crc32c(crc, buf + off, len), "length %zu at offset %zu", len, off);
			crc = sw;
		}
	}
	free(buf);
}

/* A CRC taken in two parts is the CRC of the whole, split anywhere. */
Test(crc32c, software_chains)
{
	unsigned char b[100];

	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (unsigned char)(i * 7 + 3);
	uint32_t whole = crc32c_software(0, b, sizeof(b));
	for (size_t cut = 0; cut <= sizeof(b); cut++)
		cr_assert_eq(crc32c_software(crc32c_software(0, b, cut), b + cut, sizeof(b) - cut), whole,
			     "cut at %zu", cut);
}
