DROP TABLE "gpu_slots" CASCADE;--> statement-breakpoint
DROP TABLE "slot_holders" CASCADE;