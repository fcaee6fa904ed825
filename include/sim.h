/*
 * twind-sim's state, for its two files only: sim.c (options, MQTT, the
 * run loop) and sim_plant.c (the plant's physics and its readings). The
 * plant belongs to the main thread; only `q`, `connected` and `unacked`
 * are touched by libmosquitto's thread.
 */
#ifndef TW_SIM_H
#define TW_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <mosquitto.h>

#define SIM_MAX_PUMPS     1000      /* bounds the plant arrays and the twin names */
#define SIM_MAX_RATE      100000.0  /* messages per second, whole plant */
#define SIM_NOMINAL_RPM   1450.0
#define SIM_MAX_RPM       3000.0    /* desired speeds above this are refused */
#define SIM_RAMP_S        3.0       /* a speed change takes this long, so convergence is visible */
#define SIM_HEALTHY_S     1800.0    /* simulated time the plant runs as new before it starts to age: what a detector learns as normal */
#define SIM_DEGRADE_S     1800.0    /* the plant's ageing (temperatures, sensors) is complete after this much more simulated time */
#define SIM_WEAR_S        1800.0    /* at nominal speed, the bad bearing wears by 1 in this much simulated time */
#define SIM_WEAR_MAX      2.0       /* wear stops there: vibration 12 mm/s at nominal speed, a seized bearing */
#define SIM_VIB_LIMIT     10.0      /* the Pump model's maximum vibration, reached at wear 1.6 */
#define SIM_SINGLE_EVERY  10        /* each twin's every 10th message uses plant/{twin}/telemetry/{property} */
#define SIM_NESTED_EVERY  5         /* every 5th pump-1 message carries {"bearing":{"temp":..}} */
#define SIM_PHYSICS_NS    100000000LL   /* plant state advances every 100 ms, whatever the rate */
#define SIM_POLL_NS       20000000LL    /* commands are applied within 20 ms even at low rates */
#define SIM_BURST         1000      /* at most this many messages per wake-up when behind */
#define SIM_MAX_UNACKED   1000      /* messages libmosquitto may hold for us: bounds its queue */
#define SIM_EVENTS        256       /* bound of the network-thread -> main-thread queue */
#define SIM_ID_MAX        128       /* longest command id we echo back */
#define SIM_NAME_MAX      32        /* "pump-1000.motor" and the like */
#define SIM_READINGS      8
#define SIM_WARN_PER_S    10        /* bad-input stderr lines per second, the rest are counted */

struct sim_opts {
	const char *host;
	int port;
	double rate;
	int pumps;
	long duration;
	int qos;
	const char *client_id;
	double accel;
	const char *username;	/* NULL: anonymous */
	char password[257];	/* read from -w FILE, never given on the command line */
};

struct pump {
	double setpoint;    /* speed wanted while running, from desired */
	double target;      /* speed the drive ramps to now */
	double speed;
	double ramp_rate;   /* rpm per second of the ramp under way */
	double temp;        /* lagged casing temperature */
	double winding;     /* lagged motor winding temperature */
	bool running;
	bool degrades;
	double wear;        /* bearing wear: 0 new, grows with load x time (Archard's law) */
	unsigned long sent;
	int64_t last_ts;
	int64_t motor_last_ts;
};

enum twin_kind { TWIN_NONE, TWIN_LINE, TWIN_PUMP, TWIN_MOTOR };

enum sim_ev_kind { SIM_EV_SPEED, SIM_EV_CMD };
enum sim_cmd { SIM_CMD_REDUCE, SIM_CMD_STOP, SIM_CMD_START };

struct sim_event {
	enum sim_ev_kind kind;
	enum sim_cmd cmd;
	int pump;
	double value;
	char id[SIM_ID_MAX + 1];
};

/* Commands and setpoints arrive on libmosquitto's thread; the plant belongs to
 * the main thread, so they cross over through this bounded queue. */
struct sim_queue {
	pthread_mutex_t lock;
	struct sim_event ev[SIM_EVENTS];
	unsigned head;
	unsigned len;
};

struct reading {
	const char *name;
	char text[48];      /* a JSON value, written out as is */
};

struct sim {
	struct sim_opts opt;
	struct mosquitto *mosq;
	struct pump *pumps;
	int ntwins;
	int slot;
	unsigned long msg_no;
	int64_t line_last_ts;
	int64_t start_ns;
	double degrade;     /* 0 healthy .. 1 worn out */
	uint64_t rng;
	struct sim_queue q;
	atomic_bool connected;
	bool loop_started;  /* main thread only */
	bool connect_warned;
	atomic_int unacked;
	unsigned long published;
	unsigned long skipped;
	/* network thread only: rate limit of bad-input lines */
	time_t warn_sec;
	int warn_count;
	unsigned long warn_dropped;
};

/* Wall-clock milliseconds since the epoch. */
int64_t sim_epoch_ms(void);

/* sim_plant.c */
/* A new speed for the drive to ramp to, in SIM_RAMP_S whatever the step. */
void pump_set_target(struct pump *p, double target);
/* Advances the plant by `dt` seconds of simulated time. */
void sim_step_plant(struct sim *s, int64_t now_ns, double dt);
/* The readings of one twin, nested ones last: how many, and in *flat how many are plain. */
int sim_readings(struct sim *s, enum twin_kind kind, int pump, struct reading *r,
    int *flat);
/* Each twin's ts grows strictly even when two messages fall in one millisecond. */
int64_t sim_next_ts(int64_t *last);
/* Every pump at its steady state; one of them (the second) wears. */
void sim_init_plant(struct sim *s);

#endif
