CREATE TABLE "projection_versions" (
	"name" text PRIMARY KEY NOT NULL,
	"version" integer NOT NULL,
	"recorded_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
