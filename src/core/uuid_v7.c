/*-------------------------------------------------------------------------
 *
 * uuid_v7.c
 *	  Time-ordered UUIDs (RFC 9562 version 7) for the keys of plant rows:
 *	  unique across plant databases without coordination, and inserted at
 *	  the right-hand edge of B-tree indexes like a sequence would be.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "plantsync.h"

PG_FUNCTION_INFO_V1(plantsync_uuid_v7);

/*
 * 48 bits of Unix milliseconds, then 12 bits of the sub-millisecond
 * fraction (RFC 9562 method 3), so UUIDs made by one backend are strictly
 * increasing even within a millisecond; the remaining 62 bits are random.
 */
void
plantsync_new_uuid_v7(pg_uuid_t *uuid)
{
	static uint64 last_us = 0;
	uint64		unix_us;
	uint64		unix_ms;
	uint32		rand_a;
	uint64		random_bits;

	unix_us = (uint64) GetCurrentTimestamp() +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	/* a clock step backwards must not break the order within a backend */
	if (unix_us <= last_us)
		unix_us = last_us + 1;
	last_us = unix_us;

	unix_ms = unix_us / 1000;
	rand_a = (uint32) ((unix_us % 1000) * 4096 / 1000);

	/*
	 * The random bits only need to make collisions across databases
	 * practically impossible, not to be secret: the backend's PRNG (seeded
	 * from a strong source at backend start) is enough and avoids a system
	 * call per key.
	 */
	random_bits = pg_prng_uint64(&pg_global_prng_state);
	memcpy(&uuid->data[8], &random_bits, 8);

	uuid->data[0] = (unsigned char) (unix_ms >> 40);
	uuid->data[1] = (unsigned char) (unix_ms >> 32);
	uuid->data[2] = (unsigned char) (unix_ms >> 24);
	uuid->data[3] = (unsigned char) (unix_ms >> 16);
	uuid->data[4] = (unsigned char) (unix_ms >> 8);
	uuid->data[5] = (unsigned char) unix_ms;
	uuid->data[6] = (unsigned char) (0x70 | (rand_a >> 8));
	uuid->data[7] = (unsigned char) (rand_a & 0xFF);
	uuid->data[8] = (unsigned char) (0x80 | (uuid->data[8] & 0x3F));
}

Datum
plantsync_uuid_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = palloc(UUID_LEN);

	plantsync_new_uuid_v7(uuid);
	PG_RETURN_UUID_P(uuid);
}
