"""Flow, schedulable: process a folder as its manifest says, e.g. every night at 2am."""

from ibm_watsonx_orchestrate.flow_builder.flows import END, START, Flow, flow
from imagedrop_flow_schemas import (
    BatchSummaryOut,
    FolderSummaryOut,
    TriggerFlowIn,
    TriggerRequestIn,
)


@flow(name="imagedrop_scheduled_folder_trigger", display_name="Process a folder (schedulable)",
      description="Processes a bucket folder now as its manifest (imagedrop.yaml) says; images "
                  "already edited with the same recipe are skipped. Schedulable: ask e.g. "
                  "'schedule imagedrop_scheduled_folder_trigger every day at 2am UTC'.",
      input_schema=TriggerFlowIn, output_schema=FolderSummaryOut, schedulable=True)
def build_scheduled_folder_trigger(aflow: Flow) -> Flow:
    """triggerFolder (callback with the folder's summary)."""
    trigger = aflow.tool("triggerFolder", name="trigger_folder", input_schema=TriggerRequestIn,
                         output_schema=BatchSummaryOut)
    trigger.map_input(input_variable="__requestBody__",
                      expression='{"bucket": flow.input.bucket, "prefix": flow.input.prefix, '
                                 '"prompt": flow.input.prompt}')
    aflow.sequence(START, trigger, END)
    return aflow
