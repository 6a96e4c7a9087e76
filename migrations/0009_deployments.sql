CREATE TABLE "deployments" (
	"id" text PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"version" integer NOT NULL,
	"owner" text NOT NULL,
	"task_id" text,
	"created_at" timestamp (3) with time zone NOT NULL,
	"deleted" boolean DEFAULT false NOT NULL,
	"last_position" bigint NOT NULL,
	"record" jsonb NOT NULL
);
--> statement-breakpoint
CREATE INDEX "deployments_created_idx" ON "deployments" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "deployments_task_idx" ON "deployments" USING btree ("task_id");