/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every journal record.
 */
#ifndef COHORT_CRC32C_H
#define COHORT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
