"""mask quality: the third answer of a study that shows each image with its polyp mask

Existing ratings were not asked about masks: NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mask_quality', sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            'ck_rating_mask_quality',
            "mask_quality IS NULL OR mask_quality IN ('good', 'moderate', 'poor')")
    with op.batch_alter_table('rating_revision', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mask_quality', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rating_revision', schema=None) as batch_op:
        batch_op.drop_column('mask_quality')
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_constraint('ck_rating_mask_quality', type_='check')
        batch_op.drop_column('mask_quality')
