"""The ``aws:`` settings: which account and region a host's AWS calls go to.

The EC2 source (inventory/ec2.py) also writes what it found about each instance here, so later
commands can call AWS about that host; those keys are documented as such.
"""

from __future__ import annotations

from typing import Any

from opskit.settings.base import Field, Settings, Text


class AwsSettings(Settings):
    """AWS access for the host's snapshots, ELB registrations and discovery."""

    region: Text | None = Field(None, description="AWS region of the host's calls, e.g. "
                                "us-east-1 (else the boto3 chain: AWS_REGION, the profile).")
    profile: Text | None = Field(None, description="Named profile in ~/.aws/config to take "
                                 "credentials from (else the boto3 chain).")
    endpoint_url: Text | None = Field(None, description="Lab and tests only: the AWS endpoint "
                                      "(the moto server). Production inventories never set it.")
    access_key_id: Text | None = Field(None, description="Lab and tests only: an access key "
                                       "id (production uses profiles or instance roles).")
    secret_access_key: Text | None = Field(None, description="Lab and tests only: its secret "
                                           "(masked in every output and the journal).")
    instance_id: Text | None = Field(None, description="The host's EC2 instance id (set by the "
                                     "EC2 source; needed by snapshot create's discovery).")
    availability_zone: Text | None = Field(None, description="Set by the EC2 source: the "
                                           "instance's zone.")
    private_ip: Text | None = Field(None, description="Set by the EC2 source.")
    public_ip: Text | None = Field(None, description="Set by the EC2 source.")
    instance_type: Text | None = Field(None, description="Set by the EC2 source.")
    state: Text | None = Field(None, description="Set by the EC2 source: the instance state.")
    tags: dict[str, Any] | None = Field(None, description="Set by the EC2 source: the "
                                        "instance's tags.")
