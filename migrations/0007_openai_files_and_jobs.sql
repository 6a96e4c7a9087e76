CREATE TABLE "openai_files" (
	"id" text PRIMARY KEY NOT NULL,
	"owner" text NOT NULL,
	"filename" text NOT NULL,
	"purpose" text NOT NULL,
	"bytes" bigint NOT NULL,
	"path" text NOT NULL,
	"records" integer NOT NULL,
	"estimated_tokens" bigint NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "openai_jobs" (
	"task_id" text PRIMARY KEY NOT NULL,
	"owner" text NOT NULL,
	"model" text NOT NULL,
	"training_file" text NOT NULL,
	"validation_file" text,
	"suffix" text,
	"seed" integer NOT NULL,
	"metadata" jsonb,
	"method" text NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "openai_files_created_idx" ON "openai_files" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "openai_files_owner_created_idx" ON "openai_files" USING btree ("owner","created_at","id");--> statement-breakpoint
CREATE INDEX "openai_jobs_created_idx" ON "openai_jobs" USING btree ("created_at","task_id");--> statement-breakpoint
CREATE INDEX "openai_jobs_owner_created_idx" ON "openai_jobs" USING btree ("owner","created_at","task_id");--> statement-breakpoint
CREATE INDEX "openai_jobs_training_file_idx" ON "openai_jobs" USING btree ("training_file");