ALTER TABLE "tasks" ADD COLUMN "priority" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "max_gpus" integer;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "gpu_hours" double precision;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "gpu_hours_window_hours" integer;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "max_priority" text;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "weight" double precision DEFAULT 1 NOT NULL;--> statement-breakpoint
CREATE INDEX "tasks_priority_queue_idx" ON "tasks" USING btree ("priority" DESC NULLS LAST,"queued_position") WHERE "tasks"."status" = 'QUEUED';