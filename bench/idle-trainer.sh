#!/bin/sh
# Bench trainer that trains forever and costs nothing: it says it is training, then sleeps until
# it is killed (exec: the pid the shepherd recorded is the sleep's). The busy-restart benchmark
# keeps 64 of these running across service restarts, for the service to re-attach.
printf '%s\n' '{"type":"phase","phase":"training"}'
exec sleep 86400
