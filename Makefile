# Makefile for the plantsync extension (PGXS).
#
# The install script is assembled from SQL fragments that live beside the C
# code of the capability they belong to; the order below is the order in which
# objects must exist.

EXTENSION = plantsync
EXTVERSION = 0.1.0

MODULE_big = plantsync
OBJS = \
	src/core/plantsync.o \
	src/core/uuid_v7.o \
	src/core/config_cache.o \
	src/state_machine/guard.o \
	src/ownership/override.o \
	src/outbox/outbox.o \
	src/contracts/json_schema.o \
	src/contracts/contract.o \
	src/delivery/launcher.o \
	src/delivery/worker.o \
	src/genealogy/trace.o

SQL_FRAGMENTS = \
	src/core/00_header.sql \
	src/core/10_core.sql \
	src/model/20_master_data.sql \
	src/model/30_execution.sql \
	src/model/40_inventory.sql \
	src/model/50_quality.sql \
	src/model/60_logistics_maintenance.sql \
	src/state_machine/70_state_machines.sql \
	src/ownership/80_ownership.sql \
	src/contracts/82_contracts.sql \
	src/outbox/85_outbox.sql \
	src/process_api/86_process_api.sql \
	src/process_api/86_messages_execution_quality.sql \
	src/delivery/87_delivery.sql \
	src/delivery/87_poll.sql \
	src/genealogy/88_genealogy.sql \
	src/reconciliation/89_reconciliation.sql \
	src/observability/89_sla.sql \
	src/dialects/89_dialects.sql \
	src/dialects/89_dialects_sap.sql \
	src/dialects/89_dialects_b2mml.sql \
	src/core/90_guards.sql \
	src/audit/91_audit.sql \
	src/security/92_site_isolation.sql \
	src/observability/93_observability.sql

DATA_built = $(EXTENSION)--$(EXTVERSION).sql
DATA = src/observability/plantsync_postgres_exporter.yaml
EXTRA_CLEAN = $(DATA_built)

REGRESS = install state_machine ownership ledger model_bad_input outbox contracts genealogy dialects
REGRESS_OPTS = --load-extension=plantsync

PG_CPPFLAGS = -I$(srcdir)/src/core -I$(srcdir)/src/contracts -DPLANTSYNC_VERSION=\"$(EXTVERSION)\" $(shell pkg-config --cflags libcurl) -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers

SHLIB_LINK += $(shell pkg-config --libs libcurl)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_FRAGMENTS)
	cat $^ > $@
