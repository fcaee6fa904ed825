/*
 * A bounded single-producer, single-consumer ring of variable-length
 * records, between the MQTT thread (producer) and the engine
 * (consumer). Its memory is fixed at creation: `capacity` bytes.
 */
#ifndef TW_RING_H
#define TW_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring;

/* Capacity is rounded down to a multiple of 8. Returns NULL on failure. */
struct ring *ring_new(size_t capacity);
void ring_free(struct ring *r);

/*
 * Copies a record of `len` bytes in. Blocks while the ring is full: that
 * stops the MQTT thread reading, which is how backpressure reaches the
 * broker; the consumer never stops before the producer, so the wait ends.
 * Returns 0, or TW_ERR_INVAL (larger than a quarter of the ring).
 */
int ring_push(struct ring *r, const void *rec, size_t len);

/*
 * The oldest record, waiting up to `timeout_ms` for one (0: no wait).
 * Returns NULL if none came. The record is borrowed, 8-byte aligned, and
 * stays valid until ring_pop.
 */
const void *ring_peek(struct ring *r, size_t *len, int timeout_ms);
void ring_pop(struct ring *r);

/* Makes a waiting ring_peek return (NULL) now, so the consumer can look at other work. */
void ring_wake(struct ring *r);


size_t ring_used(struct ring *r);	/* bytes, headers and padding included */
size_t ring_capacity(const struct ring *r);
uint64_t ring_count(struct ring *r);	/* records in the ring */

#endif
