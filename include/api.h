/* The REST endpoints, one function per route; see the table in http.c. */
#ifndef TW_API_H
#define TW_API_H

#include <stdint.h>

#include "http.h"
#include "names.h"

/* api_twins.c */
void api_twins_list(struct http_req *req, struct http_reply *rep);
void api_twins_get(struct http_req *req, struct http_reply *rep);
void api_twins_desired(struct http_req *req, struct http_reply *rep);
/* The {id} segment, checked; NULL (with `rep` filled) when it is bad. */
const char *api_twin_id(struct http_req *req, struct http_reply *rep);
/* An optional time argument into *out; 0, or -1 with `rep` filled. */
int api_time_arg(struct http_req *req, struct http_reply *rep, const char *name, int64_t now,
    int64_t *out);

/* The property argument: up to API_PROPS_MAX names, comma-separated, none twice. 0, or -1 with `rep` filled. */
#define API_PROPS_MAX	16
int api_props_arg(struct http_req *req, struct http_reply *rep,
    char (*props)[PROP_NAME_MAX + 1], int *nprops);

/* api_history.c */
void api_twins_history(struct http_req *req, struct http_reply *rep);

/* api_simulate.c */
void api_twins_simulate(struct http_req *req, struct http_reply *rep);

/* api_forecast.c */
void api_twins_forecast(struct http_req *req, struct http_reply *rep);

/* api_alerts.c */
void api_alerts_list(struct http_req *req, struct http_reply *rep);
void api_alerts_ack(struct http_req *req, struct http_reply *rep);
void api_alerts_shelve(struct http_req *req, struct http_reply *rep);
void api_commands_post(struct http_req *req, struct http_reply *rep);
void api_commands_list(struct http_req *req, struct http_reply *rep);

/* api_events.c */
void api_events_stream(struct http_req *req, struct http_reply *rep);

/* api_models.c */
void api_models_list(struct http_req *req, struct http_reply *rep);
void api_rules_list(struct http_req *req, struct http_reply *rep);
/* POST /api/v1/rules/test: a rule replayed over stored history (backtest.h). */
void api_rules_test(struct http_req *req, struct http_reply *rep);

/* api_system.c */
void api_system_health(struct http_req *req, struct http_reply *rep);
void api_system_metrics(struct http_req *req, struct http_reply *rep);
void api_system_reload(struct http_req *req, struct http_reply *rep);
void api_system_whoami(struct http_req *req, struct http_reply *rep);

/* api_page.c */
void api_page_index(struct http_req *req, struct http_reply *rep);
void api_page_file(struct http_req *req, struct http_reply *rep);

#endif
