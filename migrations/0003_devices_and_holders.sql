CREATE TABLE "device_holders" (
	"device_id" text NOT NULL,
	"task_id" text NOT NULL,
	"memory_mb" integer NOT NULL,
	"exclusive" boolean NOT NULL,
	"since_position" bigint NOT NULL,
	CONSTRAINT "device_holders_device_id_task_id_pk" PRIMARY KEY("device_id","task_id")
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"device_id" text PRIMARY KEY NOT NULL,
	"gpu_index" integer NOT NULL,
	"uuid" text,
	"name" text NOT NULL,
	"memory_mb" integer NOT NULL,
	"mig_profile" text,
	"present" boolean DEFAULT true NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "device_holders_exclusive_uq" ON "device_holders" USING btree ("device_id") WHERE "device_holders"."exclusive";--> statement-breakpoint
CREATE INDEX "device_holders_task_idx" ON "device_holders" USING btree ("task_id");