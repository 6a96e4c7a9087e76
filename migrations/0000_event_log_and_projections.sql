CREATE TABLE "events" (
	"position" bigserial PRIMARY KEY NOT NULL,
	"transaction_id" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"stream_id" text NOT NULL,
	"stream_version" integer NOT NULL,
	"type" text NOT NULL,
	"data" jsonb NOT NULL,
	"metadata" jsonb NOT NULL,
	"schema_version" integer DEFAULT 1 NOT NULL,
	"recorded_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "gpu_slots" (
	"slot_id" integer PRIMARY KEY NOT NULL,
	"gpu_index" integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE "slot_holders" (
	"slot_id" integer PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"since_position" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "task_logs" (
	"task_id" text NOT NULL,
	"seq" integer NOT NULL,
	"stream" text NOT NULL,
	"line" text NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "task_logs_task_id_seq_pk" PRIMARY KEY("task_id","seq")
);
--> statement-breakpoint
CREATE TABLE "tasks" (
	"id" text PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"version" integer NOT NULL,
	"owner" text NOT NULL,
	"name" text NOT NULL,
	"idempotency_key" text,
	"created_at" timestamp (3) with time zone NOT NULL,
	"queued_position" bigint,
	"deleted" boolean DEFAULT false NOT NULL,
	"last_position" bigint NOT NULL,
	"record" jsonb NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "events_stream_version_uq" ON "events" USING btree ("stream_id","stream_version");--> statement-breakpoint
CREATE INDEX "events_tx_position_idx" ON "events" USING btree ("transaction_id","position");--> statement-breakpoint
CREATE INDEX "events_type_idx" ON "events" USING btree ("type","position");--> statement-breakpoint
CREATE INDEX "events_recorded_at_idx" ON "events" USING btree ("recorded_at");--> statement-breakpoint
CREATE UNIQUE INDEX "slot_holders_task_uq" ON "slot_holders" USING btree ("task_id");--> statement-breakpoint
CREATE UNIQUE INDEX "tasks_idempotency_uq" ON "tasks" USING btree ("owner","idempotency_key");--> statement-breakpoint
CREATE INDEX "tasks_queue_idx" ON "tasks" USING btree ("queued_position") WHERE "tasks"."status" = 'QUEUED';--> statement-breakpoint
CREATE INDEX "tasks_status_created_idx" ON "tasks" USING btree ("status","created_at","id");--> statement-breakpoint
CREATE INDEX "tasks_created_idx" ON "tasks" USING btree ("created_at","id");