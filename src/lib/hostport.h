/*
 * hostport.h - the one parser of "HOST:PORT" ("[v6]:PORT" too), for
 * bus_listen, tcp: and http: checks, and the client's ws:// addresses.
 */
#ifndef COHORT_HOSTPORT_H
#define COHORT_HOSTPORT_H

/* Splits S into a host (brackets taken off) and a port of 1 to 65535, both
 * new strings.  A missing ":PORT" takes default_port, or is an error when
 * that is NULL.  -1 when S is not of that form (an empty host, white space
 * or '/' in it, a bad port). */
int hostport_split(const char *s, const char *default_port, char **host, char **port);

#endif
