"""the segmentation gate's score per synthetic image and gate (IoU of the predicted mask with
the mask the image was made with)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gate_score',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('gate', sa.String(length=36), nullable=False),
    sa.Column('iou', sa.Float(), nullable=True),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['image.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'gate', name='uq_gate_score')
    )
    with op.batch_alter_table('gate_score', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gate_score_gate'), ['gate'], unique=False)
        batch_op.create_index(batch_op.f('ix_gate_score_image_id'), ['image_id'], unique=False)


def downgrade() -> None:
    op.drop_table('gate_score')
