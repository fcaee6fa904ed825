/* twind-sim's plant: pumps and motors that ramp, heat, wear and age, and the readings they give. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* xorshift64*: noise only, so speed matters more than quality. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static double rng_uniform(uint64_t *s)
{
	return ((double)(rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_gauss(uint64_t *s)
{
	double u = rng_uniform(s), v = rng_uniform(s);

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void pump_set_target(struct pump *p, double target)
{
	p->target = target;
	/* The rate is fixed per change so that every change takes SIM_RAMP_S. */
	p->ramp_rate = fabs(target - p->speed) / SIM_RAMP_S;
	if (p->ramp_rate < 1.0)
		p->ramp_rate = 1.0;
}

/* First-order lag towards target with time constant tau. */
static double lag(double value, double target, double dt, double tau)
{
	return value + (target - value) * (1.0 - exp(-dt / tau));
}

void sim_step_plant(struct sim *s, int64_t now_ns, double dt)
{
	/* Simulated seconds since the plant began to age. */
	double t = (double)(now_ns - s->start_ns) / 1e9 * s->opt.accel - SIM_HEALTHY_S;
	double x = t <= 0 ? 0.0 : t >= SIM_DEGRADE_S ? 1.0 : t / SIM_DEGRADE_S;
	int i;

	/* smoothstep: a slow start, a steady climb, then it stays high */
	s->degrade = x * x * (3.0 - 2.0 * x);
	for (i = 0; i < s->opt.pumps; i++) {
		struct pump *p = &s->pumps[i];
		double step = p->ramp_rate * dt;
		double load;

		if (fabs(p->target - p->speed) <= step)
			p->speed = p->target;
		else
			p->speed += p->target > p->speed ? step : -step;
		load = p->speed / SIM_NOMINAL_RPM;
		/*
		 * Archard: wear grows with load and sliding distance, so at a
		 * steady speed it grows linearly and a slower pump wears slower.
		 * A linear trend is then the truth a forecast can be held to.
		 */
		if (p->degrades && t > 0 && p->wear < SIM_WEAR_MAX)
			p->wear = fmin(SIM_WEAR_MAX,
			    p->wear + load * fmin(dt * s->opt.accel, t) / SIM_WEAR_S);
		p->temp = lag(p->temp, 25.0 + 35.0 * load + (p->degrades ? 35.0 * s->degrade : 0.0),
		    dt, 30.0);
		p->winding = lag(p->winding, 30.0 + 45.0 * load, dt, 60.0);
	}
}

static double pump_current(const struct pump *p)
{
	double load = p->speed / SIM_NOMINAL_RPM;

	/* Hydraulic power grows steeply with speed; a stopped motor draws nothing. */
	return p->speed > 0 ? 2.0 + 10.0 * load * load : 0.0;
}

static double clamp0(double v)
{
	return v < 0 ? 0 : v;
}

/* Fills r with the readings of one twin, nested ones last; returns how many
 * there are and, in *flat, how many of them are plain values. */
int sim_readings(struct sim *s, enum twin_kind kind, int pump, struct reading *r,
    int *flat)
{
	struct pump *p = pump >= 0 ? &s->pumps[pump] : NULL;
	double load, vib, temp, flow = 0;
	bool running = false;
	int i, n = 0;

	switch (kind) {
	case TWIN_LINE:
		for (i = 0; i < s->opt.pumps; i++) {
			flow += 50.0 * s->pumps[i].speed / SIM_NOMINAL_RPM;
			running = running || s->pumps[i].speed > 0;
		}
		r[n].name = "throughput";
		snprintf(r[n++].text, sizeof(r->text), "%.1f", flow);
		r[n].name = "running";
		snprintf(r[n++].text, sizeof(r->text), "%s", running ? "true" : "false");
		*flat = n;
		break;
	case TWIN_PUMP:
		load = p->speed / SIM_NOMINAL_RPM;
		vib = (2.0 + 5.0 * p->wear) * (0.15 + 0.85 * load);
		temp = p->temp + 0.3 * rng_gauss(&s->rng);
		r[n].name = "temperature";
		snprintf(r[n++].text, sizeof(r->text), "%.2f", temp);
		/* A redundant second sensor; pump-3's drifts away as the plant ages. */
		r[n].name = "temperature2";
		snprintf(r[n++].text, sizeof(r->text), "%.2f", p->temp + 0.3 * rng_gauss(&s->rng) +
		    (pump == 2 ? 8.0 * s->degrade : 0.0));
		r[n].name = "vibration";
		/* pump-4's vibration sensor sticks once the plant has aged a little. */
		if (pump == 3 && s->degrade > 0.2)
			snprintf(r[n++].text, sizeof(r->text), "%.3f", 2.0);
		else
			snprintf(r[n++].text, sizeof(r->text), "%.3f",
			    clamp0(vib + 0.08 * rng_gauss(&s->rng)));
		r[n].name = "current";
		snprintf(r[n++].text, sizeof(r->text), "%.2f",
		    clamp0(pump_current(p) + (p->speed > 0 ? 0.1 * rng_gauss(&s->rng) : 0)));
		r[n].name = "speed";
		/* At rest the drive holds its target exactly, so reported can equal desired. */
		if (p->speed == p->target)
			snprintf(r[n++].text, sizeof(r->text), "%.15g", p->speed);
		else
			snprintf(r[n++].text, sizeof(r->text), "%.1f", p->speed);
		/* Always remote: the pumps take twind's rules' commands (manualMode in pump.json). */
		r[n].name = "mode";
		snprintf(r[n++].text, sizeof(r->text), "\"remote\"");
		*flat = n;
		if (pump == 0 && p->sent++ % SIM_NESTED_EVERY == 0) {
			r[n].name = "bearing";
			snprintf(r[n++].text, sizeof(r->text), "{\"temp\":%.2f}",
			    temp + 4.0 + 0.2 * rng_gauss(&s->rng));
		}
		break;
	case TWIN_MOTOR:
		r[n].name = "winding_temp";
		snprintf(r[n++].text, sizeof(r->text), "%.2f",
		    p->winding + 0.3 * rng_gauss(&s->rng));
		r[n].name = "current";
		snprintf(r[n++].text, sizeof(r->text), "%.2f",
		    clamp0(pump_current(p) + (p->speed > 0 ? 0.1 * rng_gauss(&s->rng) : 0)));
		*flat = n;
		break;
	case TWIN_NONE:
		*flat = 0;
		break;
	}
	return n;
}

/* Each twin's ts grows strictly even when two messages fall in one millisecond. */
int64_t sim_next_ts(int64_t *last)
{
	int64_t ts = sim_epoch_ms();

	if (ts <= *last)
		ts = *last + 1;
	*last = ts;
	return ts;
}

void sim_init_plant(struct sim *s)
{
	int bad = s->opt.pumps >= 2 ? 1 : 0;
	int i;

	for (i = 0; i < s->opt.pumps; i++) {
		struct pump *p = &s->pumps[i];

		p->setpoint = SIM_NOMINAL_RPM;
		p->target = SIM_NOMINAL_RPM;
		p->speed = SIM_NOMINAL_RPM;
		p->ramp_rate = 1.0;
		/* start at the steady state, so there is no warm-up transient */
		p->temp = 60.0;
		p->winding = 75.0;
		p->running = true;
		p->degrades = i == bad;
	}
	s->ntwins = 1 + 2 * s->opt.pumps;
	s->rng = (uint64_t)sim_epoch_ms() * 0x9E3779B97F4A7C15ULL | 1;
}
