/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every journal record.
 */
#ifndef COHORT_CRC32C_H
#define COHORT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#include <stdbool.h>

/* The CRC of data after crc (0 to start), by the fastest way this CPU has. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

/* The two ways, for the tests: slicing-by-8 in C, which every CPU runs, and
 * SSE 4.2's crc32 instruction, which crc32c uses when crc32c_hardware_ok()
 * (on x86-64 CPUs that have it; elsewhere crc32c_hardware is the software
 * one). */
uint32_t crc32c_software(uint32_t crc, const void *data, size_t len);
uint32_t crc32c_hardware(uint32_t crc, const void *data, size_t len);
bool crc32c_hardware_ok(void);

#endif
